"""``clips4 serve``: the local web page (FastAPI) comparing CLIP-S4 and MaskCLIP on an uploaded image."""
