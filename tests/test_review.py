"""``dedup review``: a real server on a real run, driven over HTTP and in a real browser (chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from dedup.labels import read_labels
from dedup.pipeline import run
from tests.conftest import FEBRL_YAML, TINY_TRAINING
from tests.processes import start, stop, wait_until

SCRIPT = "<script>document.title='pwned'</script>"
IMAGE = '"><img src=x onerror="document.title=\'pwned\'">'
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, febrl1: pl.DataFrame) -> dict[str, Path]:
    """A run on Febrl1 where one duplicate pair carries markup in its names."""
    root = tmp_path_factory.mktemp("review")
    hostile = {"rec-141-org", "rec-141-dup-0"}
    records = febrl1.with_columns(
        pl.when(pl.col("rec_id").is_in(hostile))
        .then(pl.lit(SCRIPT))
        .otherwise(pl.col("given_name"))
        .alias("given_name"),
        pl.when(pl.col("rec_id").is_in(hostile)).then(pl.lit(IMAGE)).otherwise(pl.col("surname")).alias("surname"),
    )
    source, config = root / "input.parquet", root / "config.yaml"
    records.write_parquet(source)
    config.write_text(FEBRL_YAML + TINY_TRAINING)
    run(source, config, root / "out")
    return {"root": root, "input": source, "config": config, "output": root / "out"}


def serve(output: Path, log: Path, *extra: str) -> tuple[object, str]:
    process = start(["dedup", "review", str(output), "--port", "0", *extra], dict(os.environ), log, cwd=log.parent)
    found: list[str] = []

    def ready() -> bool:
        match = re.search(r"at (http://\S+)", log.read_text())
        if match:
            found.append(match.group(1))
        return bool(match)

    wait_until(ready, process, log, "dedup review", timeout=60)
    return process, found[0]


@pytest.fixture()
def server(reviewed: dict[str, Path], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    output = tmp_path / "out"
    shutil.copytree(reviewed["output"], output, symlinks=True)
    process, url = serve(output, tmp_path / "review.log")
    try:
        yield url.rstrip("/"), output
    finally:
        stop(process)


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, headers={"X-Dedup": "1"}, timeout=60)


def test_the_api_serves_pairs_records_clusters_and_keeps_every_answer(server: tuple[str, Path]) -> None:
    url, output = server
    first = httpx.get(url + "/api/next?tab=a", timeout=60).json()
    pair = first["pair"]
    assert pair["candidate"] and 0.0 <= pair["probability"] <= 1.0
    assert [f["field"] for f in pair["fields"]][:2] == ["given_name", "surname"]
    for f in pair["fields"]:  # the runs of each value put it back together
        assert all(isinstance(text, str) and isinstance(same, bool) for text, same in f["left"] + f["right"])
    assert first["progress"]["answers"] == 0
    answered = post(url, "/api/label", {"left": pair["left"], "right": pair["right"], "label": "match", "tab": "a"})
    body = answered.json()
    assert body["given"] == 1 and body["progress"]["counts"]["match"] == 1
    second = body["pair"]
    assert {second["left"], second["right"]} != {pair["left"], pair["right"]}  # the queue moved on
    post(url, "/api/label", {"left": second["left"], "right": second["right"], "label": "non-match", "tab": "a"})
    assert post(url, "/api/undo", {"left": second["left"], "right": second["right"]}).json()["undone"]
    labels = read_labels(output / "labels.parquet")
    assert labels.select("left_id", "right_id", "label").rows() == [(pair["left"], pair["right"], "match")]

    record = httpx.get(url + "/api/record", params={"id": "rec-141-org"}).json()
    assert record["values"]["given_name"] == SCRIPT
    cluster = httpx.get(url + "/api/cluster", params={"id": record["cluster_id"]}).json()
    assert "rec-141-org" in {m["id"] for m in cluster["members"]}

    unknown = post(url, "/api/label", {"left": "no-such-id", "right": pair["right"], "label": "match"})
    assert unknown.status_code == 400 and "no-such-id" in unknown.json()["error"]
    bad = post(url, "/api/label", {"left": pair["left"], "right": pair["right"], "label": "maybe"})
    assert bad.status_code == 400 and "label must be one of" in bad.json()["error"]


def test_split_here_answers_every_pair_across_the_cut(server: tuple[str, Path]) -> None:
    url, output = server
    clusters = pl.read_parquet(output / "clusters.parquet")
    big = clusters.filter(pl.col("cluster_size") >= 2)["cluster_id"][0]
    view = httpx.get(url + "/api/cluster", params={"id": big}).json()
    weakest = view["links"][0]
    result = post(url, "/api/split", {"left": weakest["left"], "right": weakest["right"]}).json()
    answered = {tuple(sorted(p)) for p in result["answered"]}
    assert tuple(sorted((weakest["left"], weakest["right"]))) in answered or result["separated"]
    labels = read_labels(output / "labels.parquet")
    assert set(labels["label"]) == {"non-match"}
    assert {tuple(sorted(p)) for p in labels.select("left_id", "right_id").rows()} == answered


def test_two_tabs_answering_at_once_lose_nothing(server: tuple[str, Path]) -> None:
    url, output = server

    def tab(name: str) -> None:
        for _ in range(12):
            pair = httpx.get(url + f"/api/next?tab={name}", timeout=60).json()["pair"]
            post(url, "/api/label", {"left": pair["left"], "right": pair["right"], "label": "unsure", "tab": name})

    threads = [threading.Thread(target=tab, args=(name,)) for name in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = read_labels(output / "labels.parquet")
    assert labels.height == 24
    # each tab was handed its own pairs: no pair answered twice
    assert labels.select("left_id", "right_id").unique().height == 24


def test_requests_from_elsewhere_are_refused(server: tuple[str, Path]) -> None:
    url, _ = server
    rebound = httpx.get(url + "/api/progress", headers={"Host": "attacker.example:80"})
    assert rebound.status_code == 421  # DNS rebinding: a foreign Host header
    forged = httpx.post(url + "/api/label", json={"left": "a", "right": "b", "label": "match"})
    assert forged.status_code == 403  # a cross-site form cannot send X-Dedup
    page = httpx.get(url + "/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text.replace('<script src="/page.js" defer></script>', "")


def test_another_address_requires_the_printed_token(reviewed: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "out"
    shutil.copytree(reviewed["output"], output, symlinks=True)
    process, url = serve(output, tmp_path / "review.log", "--host", "0.0.0.0")
    try:
        token = re.search(r"token=([\w-]+)", url).group(1)
        base = url.split("?")[0].replace("0.0.0.0", "127.0.0.1").rstrip("/")
        assert httpx.get(base + "/api/progress").status_code == 403
        assert httpx.get(base + "/api/progress", headers={"X-Dedup-Token": "wrong"}).status_code == 403
        assert httpx.get(base + "/api/progress", headers={"X-Dedup-Token": token}).status_code == 200
        first = httpx.get(base + f"/?token={token}")
        assert first.status_code == 200 and "samesite=strict" in first.headers["set-cookie"].lower()
    finally:
        stop(process)


def browser():
    from selenium import webdriver

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are needed (make test installs them)")
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))


def test_in_a_browser_keys_label_retrain_reloads_and_markup_stays_text(server: tuple[str, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, output = server
    files_before = sorted(p.name for p in output.parent.iterdir())
    run_before = json.loads((output / "report.json").read_text())["run"]
    driver = browser()
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(url + "/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pair tbody tr"))
        shown = [driver.find_element(By.ID, "left-id").text, driver.find_element(By.ID, "right-id").text]
        body = driver.find_element(By.TAG_NAME, "body")
        answers = []
        for key in ("m", "n", "u"):
            pair = (driver.find_element(By.ID, "left-id").text, driver.find_element(By.ID, "right-id").text)
            body.send_keys(key)
            wait.until(
                lambda d, pair=pair: (
                    (d.find_element(By.ID, "left-id").text, d.find_element(By.ID, "right-id").text) != pair
                )
            )
            answers.append(pair)
        assert answers[0] == tuple(shown)
        body.send_keys("z")  # undo the last answer (unsure)
        wait.until(lambda d: "undid" in d.find_element(By.ID, "message").text)
        labels = read_labels(output / "labels.parquet")
        assert labels.select("left_id", "right_id", "label").rows() == [
            (*answers[0], "match"),
            (*answers[1], "non-match"),
        ]

        # record values with markup are shown as text, never run
        search = driver.find_element(By.ID, "search-id")
        search.send_keys("rec-141-org\n")
        wait.until(lambda d: SCRIPT in d.find_element(By.ID, "record").text)
        assert IMAGE in driver.find_element(By.ID, "record").text
        assert driver.title == "dedup review"
        assert not driver.find_elements(By.CSS_SELECTOR, "#record img, #cluster img, #record script")

        body.send_keys("r")  # retrain with the two answers
        wait = WebDriverWait(driver, 240)
        wait.until(lambda d: "retrained with 2 answers" in d.find_element(By.ID, "progress").text)
        driver.refresh()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pair tbody tr"))
        if os.environ.get("DEDUP_SCREENSHOT"):
            driver.save_screenshot(os.environ["DEDUP_SCREENSHOT"])
        assert driver.title == "dedup review"
    finally:
        driver.quit()
    report = json.loads((output / "report.json").read_text())
    assert report["run"] != run_before  # a new run was published
    pairs = pl.read_parquet(output / "pairs.parquet")
    for (left, right), said in zip(answers[:2], ("match", "non-match"), strict=False):
        row = pairs.filter(
            ((pl.col("rec_id_l") == left) & (pl.col("rec_id_r") == right))
            | ((pl.col("rec_id_l") == right) & (pl.col("rec_id_r") == left))
        )
        assert row["label"].to_list() == [said]
        assert row["match_probability"].to_list() == [1.0 if said == "match" else 0.0]
    model = json.loads((output / "model" / "combiner.json").read_text())
    assert model["label_answers"] == 2  # the model saw both answers (two are too few to correct it)
    assert report["labels"]["answers_used"] == 2
    # nothing was written beside the output: only inside it
    assert sorted(p.name for p in output.parent.iterdir()) == files_before


def test_a_server_killed_while_answers_arrive_loses_at_most_the_one_being_written(
    reviewed: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out"
    shutil.copytree(reviewed["output"], output, symlinks=True)
    process, url = serve(output, tmp_path / "review.log")
    url = url.rstrip("/")
    acknowledged: list[tuple[str, str]] = []
    stop_answering = threading.Event()

    def answer() -> None:
        while not stop_answering.is_set():
            try:
                pair = httpx.get(url + "/api/next?tab=k", timeout=10).json()["pair"]
                if (
                    post(
                        url, "/api/label", {"left": pair["left"], "right": pair["right"], "label": "unsure", "tab": "k"}
                    ).status_code
                    == 200
                ):
                    acknowledged.append((pair["left"], pair["right"]))
            except httpx.HTTPError:
                return  # the server is gone

    worker = threading.Thread(target=answer)
    worker.start()
    while len(acknowledged) < 8:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # mid-stream: an answer is likely being written
    process.wait(timeout=10)
    stop_answering.set()
    worker.join(30)
    labels = read_labels(output / "labels.parquet")  # whole and readable
    kept = labels.select("left_id", "right_id").rows()
    assert set(acknowledged) <= set(kept)  # every answer the page was told was saved is there
    assert len(kept) <= len(acknowledged) + 1  # at most the one being written besides
