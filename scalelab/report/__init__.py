"""Reports: self-contained HTML with embedded figures, and a Markdown twin."""

from scalelab.report.html import Section, write_report

__all__ = ["Section", "write_report"]
