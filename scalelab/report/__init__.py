"""Reports: self-contained HTML with embedded figures, and a Markdown twin; one writer for every study."""

from scalelab.report.html import Section, write_report
from scalelab.report.paths import report_path, report_stem

__all__ = ["Section", "report_path", "report_stem", "write_report"]
