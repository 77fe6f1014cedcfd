"""Secure surveys and polls (DESIGN.md, protocol 2): local DP, secret sharing, central DP.

    survey = parse_survey(Path("examples/election_poll.toml").read_text(), "election_poll.toml")
    prepared = SurveyClient(survey).prepare({"vote": "Labour", ...})   # mpcdp.client
    ...                                                                # aggregators store shares
    results = estimate(survey, total, respondents)                     # after intersect()

Modules: ``definition`` (survey files), ``local`` (per-question local DP),
``sheet`` (answer validation), ``central`` (the aggregators' noise pieces),
``release`` (intersection, minimum size, debiasing), ``synthetic``
(respondents with a known truth, for simulations).

What a malicious respondent can still do. Shares are uniformly random, so an
aggregator cannot tell a well-formed submission from one that encodes an
out-of-range value (a "yes" count of 10^6, a salary of -10^12): nothing in
this protocol proves a share's validity (that takes zero-knowledge validity
proofs such as Prio's, which mpcdp does not implement). What bounds the damage:
one submission per id and, under mutual TLS, only holders of a respondent
certificate can submit at all (admission control is the real defence: one
certificate or token per respondent); the survey's ``max_respondents`` and the
ring's headroom check bound honest totals, not forged ones; a forged value
shifts the estimates (accuracy) but can never reveal another respondent's
answer, and the central noise and local randomisation of honest respondents
keep their guarantees whatever forged submissions are added (privacy).
"""
