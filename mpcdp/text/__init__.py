"""Word-level metric-DP text sanitisation (DESIGN section 5).

``embeddings`` (vocabulary and vectors, file loaders, default GloVe),
``neighbors`` (cached nearest-neighbour lists and Delta, Delta0),
``samplers`` (exact samplers over an injected RandomSource),
``mechanisms`` (truncated Gumbel, multivariate Laplace, N_w and S_w),
``tokenize`` (lossless word/separator split with case patterns),
``sanitizer`` (texts in, sanitised texts and privacy cost out) and
``evaluate`` (the privacy-utility experiment).
"""
