#!/usr/bin/env python3
"""The page of `yuanft serve` used as a person uses it, in headless Chromium:
load /, type a résumé into the text box, press Extract, and check that the
highlighted spans and the table by type show what POST /v1/extract answers
for the same text; switch the language; save a screenshot.

usage: serve_page.py URL TEXT_FILE SCREENSHOT.png
Exit status: 0 passed, 1 failed, 77 skipped (no selenium / chromium / driver).
Needs Debian's python3-selenium, chromium and chromium-driver."""
import json
import shutil
import sys
import urllib.request

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("SKIP: python3-selenium is not installed")
    sys.exit(77)

TYPES = ["姓名", "国籍", "种族", "职位", "教育背景", "专业", "组织名", "地名"]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


def chosen(spans):
    """The spans the page draws: by start, longer first, none overlapping one drawn."""
    out, end = [], 0
    for s in sorted(spans, key=lambda s: (s["start"], -(s["end"] - s["start"]))):
        if s["start"] >= end:
            out.append(s)
            end = s["end"]
    return out


def main():
    url, text_file, shot = sys.argv[1], sys.argv[2], sys.argv[3]
    text = open(text_file, encoding="utf-8").read().strip()
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser or not shutil.which("chromedriver"):
        print("SKIP: chromium or chromium-driver is not installed")
        sys.exit(77)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1100",
              "--lang=zh-CN"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        d.set_page_load_timeout(30)
        d.get(url + "/")
        wait = WebDriverWait(d, 30)
        if d.execute_script("return document.documentElement.lang") != "zh":  # the browser asked for English
            d.find_element(By.ID, "lang").click()
        check(d.find_element(By.ID, "extract").text == "抽取", "the page starts in Chinese")
        # the adapters are listed, the first one chosen (as /v1/extract's default)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#adapter option")) > 0)
        adapter = d.find_element(By.ID, "adapter").get_attribute("value")
        box = d.find_element(By.ID, "resume")
        box.clear()
        box.send_keys(text)
        check(box.get_attribute("value") == text, "the text box holds the typed résumé")
        d.find_element(By.ID, "extract").click()
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-ms")
                   or d.find_element(By.ID, "error").text)
        check(not d.find_element(By.ID, "error").text, "no error: " + d.find_element(By.ID, "error").text)
        # what the API answers for the same text and adapter
        req = urllib.request.Request(url + "/v1/extract", data=json.dumps({"text": text, "adapter": adapter}).encode(),
                                     headers={"Content-Type": "application/json"})
        api = json.load(urllib.request.urlopen(req, timeout=60))
        want = chosen(api["spans"])
        marks = d.execute_script(
            "return Array.from(document.querySelectorAll('#highlighted mark.ent')).map(m => "
            "({type: m.dataset.type, start: +m.dataset.start, end: +m.dataset.end, text: m.firstChild.textContent}))")
        check(len(marks) == len(want), "%d highlighted spans, /v1/extract gives %d to draw" % (len(marks), len(want)))
        for m, w in zip(marks, want):
            check((m["type"], m["start"], m["end"], m["text"]) == (w["type"], w["start"], w["end"], w["text"]),
                  "highlight %r, /v1/extract %r" % (m, w))
            check(list(text)[m["start"]:m["end"]] == list(m["text"]), "highlight %r is not the text at its place" % m)
        # the whole text is shown, highlights in place
        shown = d.execute_script(
            "const h = document.getElementById('highlighted'); let s = '';"
            "h.childNodes.forEach(n => s += n.nodeType === 3 ? n.textContent : n.firstChild.textContent); return s;")
        check(shown == text, "the highlighted text is the résumé")
        rows = d.execute_script(
            "return Array.from(document.querySelectorAll('#table tbody tr[data-type]')).map(r => "
            "[r.dataset.type, Array.from(r.querySelectorAll('.ent-item')).map(e => e.textContent)])")
        want_rows = [[t, api["entities"][t]] for t in TYPES if api["entities"].get(t)]
        check(rows == want_rows, "table %r, /v1/extract entities %r" % (rows, want_rows))
        check(len(want) > 0, "the résumé gave entities to highlight (a model that memorised it)")
        status = d.find_element(By.ID, "status").text
        check(any(ch.isdigit() for ch in status), "the time taken is shown: %r" % status)
        d.save_screenshot(shot)
        # English: labels and type names change, the spans stay
        d.find_element(By.ID, "lang").click()
        check(d.find_element(By.ID, "extract").text == "Extract", "the button reads Extract in English")
        names = d.execute_script(
            "return Array.from(document.querySelectorAll('#table tbody tr[data-type] td.type')).map(t => t.textContent)")
        check(all(n.isascii() for n in names) and len(names) == len(want_rows), "English type names: %r" % names)
        check(len(d.find_elements(By.CSS_SELECTOR, "#highlighted mark.ent")) == len(want), "spans kept in English")
        d.save_screenshot(shot.replace(".png", "-en.png"))
    finally:
        d.quit()
    print("%d highlighted spans, %d types in the table, screenshot %s" % (len(want), len(want_rows), shot))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
