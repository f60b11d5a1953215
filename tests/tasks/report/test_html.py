"""report.html in a real browser: headless Chromium opens it offline and every figure decodes.

Chromium is Debian's `chromium` package (`.ci/run` installs it). In CI (CI set) a missing browser
fails the test; elsewhere it is skipped.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.report.publish import write_report
from tests.tasks.report.test_publish import result

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Appended to a copy of the page: once everything has loaded, the title says, per image, whether
# it is complete and how wide it decoded (0: a broken image).
_PROBE = """<script>
window.addEventListener("load", () => {
  document.title = JSON.stringify([...document.images].map(
    (image) => [image.complete, image.naturalWidth, image.naturalHeight]));
});
</script>"""


@pytest.fixture
def chromium() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must install Debian's chromium package")
        pytest.skip("no chromium: apt-get install chromium")
    return found


def _images_as_the_browser_sees_them(browser: str, page: Path, profile: Path) -> list:
    probe = page.with_name("probe.html")
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _PROBE + "\n</body>"),
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # as root in CI; the page is this test's own file
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",  # let the load event fire before the DOM is dumped
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", done.stdout, re.S)
    assert title, done.stdout[:2000]
    return json.loads(title[1])


def test_report_html_renders_offline_with_every_figure_decoded(tmp_path, chromium):
    rows = [
        result("tutorial", "softmax", 0.84),
        result("tutorial", "relu", None, diverged_epoch=0),
        result("mlp", "relu", 0.868),
        result("mlp", "gelu", 0.871),
    ]
    for r in rows:
        r["val_accuracies"] = [0.5 + 0.1 * e for e in range(r["epochs_run"])]
    rows[0]["confusion_matrix"] = [[8, 2], [1, 9]]
    context = {"dataset": "fashion-mnist", "baseline": "relu", "parent_run_id": "p"}
    folder = write_report(rows, tmp_path / "reports", "p", context).folder

    images = _images_as_the_browser_sees_them(chromium, folder / "report.html", tmp_path / "prof")

    embedded = (folder / "report.html").read_text(encoding="utf-8").count("<img ")
    assert len(images) == embedded >= 6  # loss x2, val accuracy x2, test accuracy, confusion
    for complete, width, height in images:
        assert complete and width > 0 and height > 0  # every PNG decoded
