"""Using a trained model: the pipelines behind translate/summarize/sentiment and the Python API."""
