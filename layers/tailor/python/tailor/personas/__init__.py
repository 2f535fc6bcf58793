"""Personas: shoppers clustered into a probabilistic persona mixture, named traits as Beta posteriors, persona
adjustment vectors, and re-ranking by them.

evidence   notes that folding an event leaves in session and shopper state
traits     the named traits and their Beta updates
features   the shopper feature vector (one function, online and batch)
model      the persona model: mixtures (a shopper's state's tempered posterior), cold start, adjustments; one artifact
clustering fitting personas (k by BIC), keeping their ids, refining them, cold-start tables
adjustments lifts over site-wide rates from persona-weighted counters, shrunk by empirical Bayes
online     Ingest's part: persona counters on items rows, per-batch traits and mixtures
rebuild    the scheduled rebuild and refine jobs
rerank     the API's part: the persona scorer, its settings, the profile section
storage    the model in the data bucket and its per-container cache
scan       reading whole tables for the jobs
"""
