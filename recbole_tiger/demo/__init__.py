"""A web demo (Gradio) for a trained TIGER checkpoint: recommendations per user next to a
baseline's, the semantic IDs and their health, and the benchmark results.
``python -m recbole_tiger.demo --model_file=...``; logic in ``backend.py``, layout in ``app.py``."""
