"""The survey page in headless Chromium against a federation of real processes (issue 12's browser test).

``mpcdp certs init``, ``survey invite``, three ``survey aggregator --https --issuer-key`` processes, ``survey
issuer`` and ``survey serve-page`` over HTTPS, started as a pollster would (web/test/federation.py); Debian's
chromium driven by selenium (web/test/chromium.py) loads the page, answers every question kind and sends.

* no axe-core (WCAG) violation on the form, its error state or the receipt, at phone width;
* the receipt names every aggregator, and ``survey close`` counts exactly the respondents who sent, with
  exactly their answers (the test survey has no local or central noise, so the release is exact);
* a reload while one aggregator is unreachable, and again after the page lost the acknowledgements it had
  (the race of a reload mid-upload), resends the same submission: the aggregators that had it answer
  "duplicate" and nothing is counted twice;
* a reload before the token arrived redeems the same invitation with the same saved request;
* a second submission with a used invitation is refused at redemption; the same token with another
  submission is refused by the aggregator.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from tests.support import ROOT
from web.test import chromium, federation

AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"  # pinned in web/package-lock.json


# Every question kind; no local mechanism and no central noise, so the release must equal the answers exactly.
SURVEY = federation.without_noise(federation.SURVEY)
OUTBOX = "mpcdp/outbox/web-page-test"
WAIT = 90  # seconds: the machine is shared and loaded

# Two respondents; salaries on the 64-EUR grid so their mean is exact.
FIRST = {"will_vote": True, "vote": "Labour", "issues": ["economy", "climate"], "salary": 51200}
SECOND = {"will_vote": False, "vote": "Greens", "issues": [], "salary": 30016}
THIRD = {"will_vote": True, "vote": "Other", "issues": ["health", "housing", "climate"], "salary": 199936}
sent: list[dict] = []  # answers whose receipt the page showed


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    if reason := chromium.missing():
        pytest.fail(reason)
    if not (ROOT / "web" / "dist" / "page.js").is_file():
        pytest.fail("the survey page is not built: run `make web`")
    f = federation.PageFederation(tmp_path_factory.mktemp("web-page"), invitations=4, survey_text=SURVEY)
    try:
        yield f.start()
    finally:
        f.stop()


@pytest.fixture
def browser():
    driver = chromium.chromium(chromium.PHONE)
    try:
        yield driver
    finally:
        driver.quit()


def until(predicate, what: str):
    return chromium.until(predicate, what, WAIT, poll=0.1)


def open_page(driver, fed, code: str) -> None:
    driver.get(f"{fed.page_url}#invitation={code}")
    until(lambda: driver.find_elements("css selector", "form button[type=submit]"), "the form")


def answer(driver, answers: dict) -> None:
    """Fill the form as a person would: click the radio buttons and boxes, type the number, press send."""
    driver.find_element("id", f"q-will_vote-{'yes' if answers['will_vote'] else 'no'}").click()
    options = federation_options()
    driver.find_element("id", f"q-vote-{options['vote'].index(answers['vote'])}").click()
    for issue in answers["issues"]:
        driver.find_element("id", f"q-issues-{options['issues'].index(issue)}").click()
    driver.find_element("id", "q-salary-value").send_keys(str(answers["salary"]))
    driver.find_element("css selector", "form button[type=submit]").click()


def federation_options() -> dict:
    return {
        "vote": ["Greens", "Labour", "Liberal", "Conservative", "Other"],
        "issues": ["economy", "health", "climate", "housing"],
    }


def receipt(driver) -> str:
    return until(lambda: driver.find_elements("id", "receipt"), "the receipt")[0].text


def status(driver) -> str:
    """The page's status line ("" while the page is still loading)."""
    found = driver.find_elements("css selector", ".status")
    return found[0].text if found else ""


def accessibility_violations(driver) -> list:
    """axe-core's WCAG rules over the page as it is now: [(rule, impact, where)] of every violation."""
    driver.execute_script(AXE.read_text())
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.map(n => n.target)])),"
        " e => done([['axe failed', String(e), []]]));"
    )


def outbox(driver) -> dict | None:
    raw = driver.execute_script(f"return localStorage.getItem('{OUTBOX}')")
    return json.loads(raw) if raw else None


def test_page_says_what_is_protected_and_labels_every_control(fed, browser):
    open_page(browser, fed, "not-a-real-code")
    text = browser.find_element("id", "page").text
    assert "no single organisation can see them" in text  # this test survey does not randomize: the page says so
    assert "pollster-a, pollster-b and university-c" in text
    for control in browser.find_elements("css selector", "form input"):
        labels = browser.find_elements("css selector", f"label[for='{control.get_attribute('id')}']")
        assert labels, f"input {control.get_attribute('id')} has no label"
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= chromium.PHONE[0], "the page scrolls sideways on a phone"
    assert accessibility_violations(browser) == []
    browser.find_element("css selector", "form button[type=submit]").click()  # nothing answered
    errors = [e.text for e in browser.find_elements("css selector", "fieldset .error") if e.is_displayed()]
    assert errors == ["Please answer this question."] * 2 + [
        "Please enter a number."
    ]  # multi-select: none is an answer
    assert browser.switch_to.active_element.get_attribute("name") == "q-will_vote"  # focus on the first to fix
    assert accessibility_violations(browser) == []


def test_a_respondent_answers_every_kind_and_gets_a_receipt(fed, browser):
    open_page(browser, fed, fed.codes[0])
    answer(browser, FIRST)
    text = receipt(browser)
    assert "your answers were received" in text
    for name in federation.AGGREGATORS:
        assert f"{name}: stored" in text
    assert outbox(browser) is None  # the shares are gone from the device; the receipt stays
    assert accessibility_violations(browser) == []
    sent.append(FIRST)


def test_a_used_invitation_is_refused(fed, browser):
    open_page(browser, fed, fed.codes[0])  # a fresh browser: no receipt stored, the same code
    answer(browser, SECOND)
    line = browser.find_element("css selector", ".status")
    until(lambda: line.get_attribute("data-refusal"), "the refusal")
    assert line.get_attribute("data-refusal") == "invitation_refused"
    assert "Not accepted" in line.text
    assert not browser.find_elements("id", "receipt")


def test_a_reload_mid_upload_resends_without_counting_twice(fed, browser):
    down = fed.endpoints["aggregators"]["university-c"].removeprefix("https://")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"*{down}*"]})
    open_page(browser, fed, fed.codes[1])
    answer(browser, SECOND)
    until(lambda: len((outbox(browser) or {}).get("delivered", {})) == 2, "two aggregators' acknowledgements")
    pending = outbox(browser)
    assert set(pending["delivered"]) == {"pollster-a", "pollster-b"} and pending["token"]

    browser.refresh()  # mid-upload: university-c still unreachable, the page resumes from its outbox
    until(lambda: "saved on this device" in status(browser), "the resume")
    # the race of a reload mid-upload: the aggregators stored the report but the page never saw their answer
    browser.execute_script(
        f"const e = JSON.parse(localStorage.getItem('{OUTBOX}')); e.delivered = {{}};"
        f"localStorage.setItem('{OUTBOX}', JSON.stringify(e));"
    )
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    browser.refresh()
    text = receipt(browser)
    assert "pollster-a: stored (confirmed again)" in text and "pollster-b: stored (confirmed again)" in text
    assert "university-c: stored" in text and "university-c: stored (confirmed again)" not in text
    sent.append(SECOND)

    # the same token for another submission: refused by the aggregator, nothing stored
    body = {
        "digest": httpx.get(fed.page_url + "survey.json", verify=False).json()["digest"],
        "submission_id": secrets.token_hex(16),
        "report": pending["reports"][0],
        "token": pending["token"],
    }
    url = f"{fed.endpoints['aggregators']['pollster-a']}/v1/surveys/web-page-test/reports"
    refused = httpx.post(url, json=body, verify=False)
    assert refused.status_code == 403 and refused.json()["error"] in ("token_invalid", "token_reused")
    # and the very same submission again: a duplicate, not a second respondent
    again = httpx.post(url, json={**body, "submission_id": pending["sid"]}, verify=False)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"


def test_a_reload_before_the_token_arrived_redeems_the_same_request(fed, browser):
    """The submission and its blinded token request are saved before the redemption; after a reload the page
    redeems the same invitation with the same request (a new request would be refused: the code is spent)."""
    tokens = f"*{fed.endpoints['issuer'].removeprefix('https://')}/v1/surveys/*/tokens*"
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [tokens]})
    open_page(browser, fed, fed.codes[2])
    until(lambda: browser.find_elements("css selector", "form[data-issuer=ready]"), "the issuer key")
    answer(browser, THIRD)
    saved = until(lambda: outbox(browser), "the outbox")
    assert saved["request"] and not saved.get("token") and saved["delivered"] == {}
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    browser.refresh()
    text = receipt(browser)
    assert all(f"{name}: stored" in text for name in federation.AGGREGATORS) and "confirmed again" not in text
    sent.append(THIRD)


def test_close_counts_exactly_the_respondents_who_sent(fed):
    assert len(sent) == 3, "the earlier tests of this file must have sent all three respondents"
    doc = fed.close()
    assert doc["verification"]["counted"] == 3 and doc["verification"]["rejected"] == 0
    estimates = {q["question"]: {e["label"]: e["value"] for e in q["estimates"]} for q in doc["questions"]}
    assert all(q["respondents"] == 3 for q in doc["questions"])
    n = len(sent)
    assert estimates["will_vote"]["yes"] == pytest.approx(sum(s["will_vote"] for s in sent) / n)
    for option in federation_options()["vote"]:
        assert estimates["vote"][option] == pytest.approx(sum(s["vote"] == option for s in sent) / n)
    for option in federation_options()["issues"]:
        assert estimates["issues"][option] == pytest.approx(sum(option in s["issues"] for s in sent) / n)
    assert estimates["salary"]["mean"] == pytest.approx(sum(s["salary"] for s in sent) / n)
