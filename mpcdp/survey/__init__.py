"""Secure surveys and polls (DESIGN.md, protocol 2): local DP, secret sharing, central DP.

    survey = parse_survey(Path("examples/election_poll.toml").read_text(), "election_poll.toml")
    prepared = SurveyClient(survey).prepare({"vote": "Labour", ...})   # mpcdp.survey.respondent
    ...                                                                # aggregators store shares
    results = estimate(survey, total, respondents)                     # after intersect()

Modules: ``questions`` (the question kinds, one class each, in a registry:
encoding, checks, sensitivity, Prio3 circuit, debiasing), ``local`` (the local
DP mechanisms, one class each, in a registry), ``definition`` (survey files),
``sheet`` (answer validation), ``respondent`` (the respondent's client),
``noise`` (the aggregators' central noise pieces), ``release``
(intersection, minimum size, debiasing), ``synthetic`` (respondents with a
known truth, for simulations), ``proved`` (answers as Prio3 reports and their
verification), ``lifecycle`` (an aggregator's survey state machine),
``forged`` (malicious respondents, for simulations and tests).

What a malicious respondent can do. With ``proofs = "prio3"`` every answer
carries a zero-knowledge proof of validity that the aggregators check
together (:mod:`.proved`): a count outside 0/1, two options in one choice, an
option ticked twice or a number outside its proved range is rejected by all
and reported as rejected, so one admitted respondent moves a total by at most
one valid answer. Without proofs (ring shares), shares are uniformly random and
nothing proves their validity: an aggregator cannot tell a well-formed
submission from one encoding a "yes" count of 10^6. Either way admission
control (one certificate or token per respondent) bounds how many respondents
there are, and forged input can hurt accuracy but never privacy: the central
noise and honest respondents' local randomisation keep their guarantees.
"""
