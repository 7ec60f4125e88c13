"""The ``report`` stage's library: reports/report.md, the side-by-side tables and the paper's figures.

One module per concern: :mod:`inputs` reads what ``evaluate`` wrote, :mod:`tables` and :mod:`markdown` render the
text, :mod:`encoders` wraps the shared inference (clips4.eval) of each method, :mod:`segments` gathers the val
superpixels' embeddings, :mod:`pca` projects embeddings, and ``figures_*`` draw the PNGs. The stage runner is
clips4/stages/report.py.
"""
