"""The local web demo (`python main.py serve`): caption an uploaded image with the supervised and the SCST
captioner side by side, and stream Tiny Shakespeare from the char GPT. See docs/serve.md."""
