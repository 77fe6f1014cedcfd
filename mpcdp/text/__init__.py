"""Word-level metric-DP text sanitisation.

``embeddings`` (vocabulary and vectors, file loaders, default GloVe),
``neighbors`` (cached nearest-neighbour lists and Delta, Delta0),
``nearest`` (the word nearest a noisy vector: exact, or by inverted lists),
``samplers`` (exact samplers over an injected RandomSource),
``mechanisms`` (truncated Gumbel, multivariate Laplace and their registry, N_w and S_w),
``tokenize`` (lossless word/separator split with case patterns, per text),
``spans``, ``lexicon``, ``render`` (the same split, lookup and writing back for a whole batch at once),
``sanitizer`` (texts in, sanitised texts and privacy cost out),
``corpus`` and ``dask_workers`` (a column of a file, partition by partition, here or on Dask),
``calibrate`` (epsilon from a target N_w) and ``evaluate`` (the privacy-utility experiment).
"""
