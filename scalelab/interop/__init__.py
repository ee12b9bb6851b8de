"""Interoperability: scalelab models to and from the Hugging Face format, and experiment trackers.

- `hf_export.export_hf`: a checkpoint -> a folder that `transformers.AutoModelForCausalLM` and
  `AutoTokenizer` load with no custom code (GPT-2 for the `gpt2` recipe, Qwen3 for `modern`),
  checked logit for logit against scalelab's own forward before it is written.
- `hf_import.import_hf`: a local GPT-2 (or scalelab-shaped Qwen3) folder -> a scalelab checkpoint
  registered as a run in the store, checked the same way.
- `trackers`: TensorBoard, MLflow and W&B (offline) mirrors of what the run store records; the
  store stays the source of truth and a failing tracker never fails a run.

The Hugging Face parts need the `hf` extra (transformers); the trackers the `track` extra.
"""
