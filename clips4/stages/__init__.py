"""The pipeline stages that fill the caches: thin runners over the library, one module per DVC stage."""
