"""Each aggregator's privacy ledger of survey releases: one dataset per survey, charged at Release, once.

Decision (issue 10): a survey's central noise protects one *replaced respondent*
(:attr:`mpcdp.dp.loss.Relation.RESPONDENT`), a different neighboring relation from a party's
add/remove-one-record budget, so it never shares a budget with queries: every aggregator keeps a
:class:`mpcdp.dp.ledger.PrivacyLedger` file of its own whose datasets are survey ids. The budget of a
survey is what one release costs (:func:`mpcdp.survey.noise.release_loss`: every question's declared
loss composed), and the charge is made when this aggregator's noisy aggregate share is given out, labelled
with the digest of the report set it covers:

* after the store has recorded the release (so a refused or failed release spends nothing) and before
  the share leaves the process (so nothing leaves uncharged: a crash in between is charged by the
  replay that returns the same share);
* a replay over the same set finds its charge and charges nothing more; any other second charge is over
  budget and refused (the lifecycle already refuses a release over another set).

Local DP is spent on the respondent's device and never reaches this ledger (it is reported per question).
A survey without central noise has no loss and no ledger entry.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpcdp.dp.ledger import BudgetExceeded, Charge, PrivacyLedger
from mpcdp.survey.definition import Survey
from mpcdp.survey.noise import release_loss


def release_label(digest: bytes) -> str:
    return "release " + digest.hex()


class SurveyLedger:
    """The ledger file of one aggregator's survey releases."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def ledger(self, survey: Survey) -> PrivacyLedger | None:
        """The survey's ledger (its budget: one release), or None if it declares no central noise."""
        loss = release_loss(survey)
        return None if loss is None else PrivacyLedger(self.path, survey.id, loss)

    def charge_release(self, survey: Survey, digest: bytes) -> Charge | None:
        """Charge the release over the report set ``digest``, once; a replay returns the first charge.

        Raises :class:`BudgetExceeded` if the survey was charged for another set.
        """
        ledger = self.ledger(survey)
        if ledger is None:
            return None
        label = release_label(digest)
        try:
            return ledger.charge(ledger.budget, label=label)
        except BudgetExceeded:
            for charge in ledger.history():
                if charge.label == label:
                    return charge
            raise
