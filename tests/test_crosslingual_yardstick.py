"""The offline cross-lingual yardstick: a parallel set built at test time from the gettext
catalogues installed on this machine, its filters and split, the two measures with their
random-initialisation floor, and a real pretraining run that keeps checkpoint_best by it."""
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import LANGS
from plugin_utils import REPO, train_choosing_best_by_probe
from xlmr.downstream import probe_data
from xlmr.downstream.gettext_catalogues import (
    FORMAT, Filters, candidate_pairs, catalogue_files, is_test, normalise, read_catalogue, rejection,
    resolve_duplicates,
)
from xlmr_plugin.evaluation.crosslingual_set import ENGLISH, MARKER, Pair, load_crosslingual_set
from xlmr_plugin.evaluation.crosslingual_yardstick import retrieval_accuracy, score_features

TRANSLATED = [lang for lang in LANGS if lang != ENGLISH]


@pytest.fixture(scope="module")
def catalogued() -> list:
    """The corpus languages of the test data that have catalogues on this machine."""
    found = [lang for lang in TRANSLATED if catalogue_files(lang)]
    if len(found) < 2:
        pytest.skip(f"this machine has gettext catalogues for {found or 'none'} of {TRANSLATED} "
                    "under /usr/share/locale: the yardstick needs two languages")
    return found


@pytest.fixture(scope="module")
def yardstick(catalogued, xlmr_data, tmp_path_factory) -> Path:
    """xlmr-probe-data --kind gettext for the languages of the prepared test data."""
    out = tmp_path_factory.mktemp("yardstick") / "gettext"
    assert probe_data.main([str(xlmr_data), "--kind", "gettext", "--out", str(out)]) == 0
    return out


def real_entries(lang: str, domain: str) -> dict:
    return {normalise(k): normalise(v) for k, v in read_catalogue(catalogue_files(lang)[domain]).items() if k}


def test_filters_drop_what_they_should(catalogued):
    lang = "de" if "de" in catalogued else catalogued[0]
    domains = catalogue_files(lang)
    domain = "coreutils" if "coreutils" in domains else sorted(domains)[0]
    entries = real_entries(lang, domain)
    kept = {p.english: p for p in candidate_pairs(lang, Filters(), Path("/usr/share/locale"), Counter(), [])}
    # each reason, on a real entry of the catalogue
    for reason, matches in [
        ("format", lambda k, v: "%s" in k),
        ("short", lambda k, v: 0 < len(k) < 20 and not FORMAT.search(k) and not FORMAT.search(v)),
        ("long", lambda k, v: len(k) > 200 and not FORMAT.search(k) and not FORMAT.search(v)),
    ]:
        found = [k for k, v in entries.items() if matches(k, v)]
        assert found, f"{domain} ({lang}) has no entry to check the {reason} filter on"
        for msgid in found[:20]:
            assert rejection(msgid, entries[msgid]) == reason, msgid
            assert msgid not in kept
    # what is kept is a translated sentence in both languages, on one line
    ours = [p for p in kept.values() if p.domain == domain]
    assert len(ours) > 20
    for pair in ours:
        assert pair.english == entries[pair.english] or pair.translation == entries[pair.english]
        assert len(pair.english) >= 20 and pair.translation != pair.english
        assert not FORMAT.search(pair.english) and not FORMAT.search(pair.translation)
        assert "\t" not in pair.translation and "\n" not in pair.translation and "  " not in pair.translation
    # the rules themselves, on the forms they are there for
    assert rejection("Cannot open %(name)s for writing now", "x") == "format"
    assert rejection("Failed to read the file {0} from disk", "x") == "format"
    assert rejection("Could not expand ${HOME} on this system", "x") == "format"
    assert rejection("Remove the selected <b>files</b> now", "Die <b>Dateien</b> jetzt entfernen") == "markup"
    assert rejection("Select the ---- ==== //// of things", "Wählen Sie ---- ==== ////") == "markup"
    assert rejection("Display this help and exit", "Display this help and exit") == "untranslated"
    assert rejection("Display this help and exit", "") == "untranslated"
    assert rejection("org.gnome.desktop.interface", "x y z") == "short"
    assert rejection("Display this help and exit", "Diese Hilfe anzeigen und beenden") is None
    assert normalise("  _Open the\n     file ") == "Open the file"
    assert normalise("ファイルを開く(_O)") == "ファイルを開く"


def test_untranslated_entries_of_real_catalogues_are_dropped(catalogued):
    found = []
    for lang in catalogued:
        for domain in ("glib20", "gtk20-properties", "coreutils", "libc"):
            if domain in catalogue_files(lang):
                found += [(lang, domain, k) for k, v in real_entries(lang, domain).items()
                          if v == k and rejection(k, v) == "untranslated"]
    assert found, "no untranslated entry in the catalogues checked"
    lang, domain, msgid = found[0]
    kept = candidate_pairs(lang, Filters(), Path("/usr/share/locale"), Counter(), [])
    assert all(p.english != msgid for p in kept)


def test_duplicates_leave_one_label_and_one_answer():
    pairs = {"de": [
        Pair("coreutils", "Write the output to a file", "Die Ausgabe in eine Datei schreiben"),
        Pair("tar", "Write the output to a file", "Die Ausgabe in eine Datei schreiben"),  # two labels: dropped
        Pair("grep", "Print the matching lines only", "Nur passende Zeilen ausgeben"),
        Pair("grep", "print the matching lines only.", "Nur passende Zeilen ausgeben."),  # same sentence
        Pair("sed", "Edit the files in place now", "Dateien direkt bearbeiten"),
        Pair("sed", "Edit all the files in place", "Dateien direkt bearbeiten"),  # same translation
    ]}
    rejected = Counter()
    kept = resolve_duplicates(pairs, rejected)["de"]
    assert kept == [Pair("sed", "Edit all the files in place", "Dateien direkt bearbeiten"),
                    Pair("grep", "Print the matching lines only", "Nur passende Zeilen ausgeben")]
    assert rejected["duplicate"] == 4


def test_the_set_covers_the_languages_and_its_split_never_shares_a_sentence(yardstick, catalogued):
    data = load_crosslingual_set(yardstick)
    meta = json.loads((yardstick / MARKER).read_text(encoding="utf-8"))
    assert data.languages == sorted(catalogued)  # DEST's languages, in its order
    assert all(len(data.retrieval[lang]) == meta["sizes"]["max_pairs"] for lang in data.languages)
    for lang, pairs in data.retrieval.items():
        assert len({p.english for p in pairs}) == len({p.translation for p in pairs}) == len(pairs), lang
    train = {p.english for p in data.transfer_train}
    assert len(data.domains) == meta["sizes"]["domains"] and set(data.transfer_test) >= {ENGLISH}
    for lang, pairs in data.transfer_test.items():
        assert not train & {p.english for p in pairs}, f"{lang}: a test sentence's source is in the training set"
        assert all(is_test(p.english, meta["sizes"]["test_percent"]) for p in pairs)
        counts = Counter(p.domain for p in pairs)
        assert set(counts) == set(data.domains) and len(set(counts.values())) == 1, f"{lang} unbalanced: {counts}"
    assert not any(is_test(e, meta["sizes"]["test_percent"]) for e in train)
    assert len(set(Counter(p.domain for p in data.transfer_train).values())) == 1


def test_the_build_is_deterministic(yardstick, xlmr_data, tmp_path):
    again = tmp_path / "again"
    assert probe_data.main([str(xlmr_data), "--kind", "gettext", "--out", str(again)]) == 0
    files = sorted(p.relative_to(yardstick) for p in yardstick.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (yardstick / name).read_bytes() == (again / name).read_bytes(), name


def test_gettext_kind_names_a_bad_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        probe_data.main([str(tmp_path), "--kind", "gettext", "--out", str(tmp_path / "o"), "--langs", "de",
                         "--test-percent", "100"])
    assert "--test-percent" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe_data.main([str(tmp_path), "--out", str(tmp_path / "o")])
    assert "--mnli-dir" in capsys.readouterr().err


def test_an_identity_model_retrieves_every_translation(yardstick):
    """Features of a translation = features of its English source: retrieval is 100%;
    the same features with the English side shuffled retrieve almost nothing."""
    data = load_crosslingual_set(yardstick)
    source = {p.translation: p.english for pairs in [*data.retrieval.values(), *data.transfer_test.values()]
              for p in pairs}
    words = sorted({w for e in [*source.values(), *(p.english for p in data.transfer_train)] for w in e.split()})
    index = {w: i for i, w in enumerate(words)}

    def bag_of_english_words(texts):
        x = torch.zeros(len(texts), len(words))
        for row, text in enumerate(texts):
            for word in source.get(text, text).split():
                x[row, index[word]] += 1
        return x

    scores = score_features(bag_of_english_words, data)
    assert scores.retrieval == {lang: 100.0 for lang in data.languages}
    assert scores.retrieval_mean == 100.0
    # transfer scores each translation as its English source: the in-language accuracy on those sources
    sources = replace(data, transfer_test={lang: [Pair(p.domain, p.english, p.english) for p in pairs]
                                           for lang, pairs in data.transfer_test.items()})
    assert scores.transfer == score_features(bag_of_english_words, sources).transfer
    assert min(scores.transfer.values()) > 100 / len(data.domains) + 20  # domains are told apart by their words
    x = bag_of_english_words([p.english for p in data.retrieval[data.languages[0]]])
    shuffled = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    assert retrieval_accuracy(shuffled, x) < 10.0


def test_pretraining_keeps_the_checkpoint_best_by_the_yardstick_and_the_cli_agrees(yardstick, xlmr_data, tmp_path):
    valid = train_choosing_best_by_probe(xlmr_data, tmp_path, "gettext", yardstick)
    scores = [r["valid_downstream_gettext"] for r in valid]
    assert all(0 <= s <= 100 for s in scores) and all(0 <= r["valid_downstream_gettext_transfer"] <= 100 for r in valid)
    # the floor is measured once: the same beside every figure
    assert len({(r["valid_downstream_gettext_floor"], r["valid_downstream_gettext_transfer_floor"]) for r in valid}) == 1
    at = scores.index(max(scores))  # checkpoint_best's record (the earliest maximum)
    dest, save = tmp_path / "data", tmp_path / "ckpt"

    # xlmr-yardstick on checkpoint_best gives the figures training logged for it, floors included
    out = tmp_path / "yardstick.json"
    proc = subprocess.run([sys.executable, "-m", "xlmr_plugin.probing.yardstick", str(save / "checkpoint_best.pt"),
                           str(yardstick), "--data", str(dest), "--json", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["mean"]["retrieval"]["model"] == pytest.approx(valid[at]["valid_downstream_gettext"], abs=0.006)
    assert figures["mean"]["transfer"]["model"] == pytest.approx(valid[at]["valid_downstream_gettext_transfer"], abs=0.006)
    assert figures["mean"]["retrieval"]["floor"] == pytest.approx(valid[at]["valid_downstream_gettext_floor"], abs=0.006)
    assert figures["mean"]["transfer"]["floor"] == pytest.approx(
        valid[at]["valid_downstream_gettext_transfer_floor"], abs=0.006)
    data = load_crosslingual_set(yardstick)
    assert set(figures["retrieval"]) == set(data.languages) and set(figures["transfer"]) == set(data.transfer_test)
    header, *rows = proc.stdout.splitlines()[1:]
    assert header.split() == ["lang", "pairs", "retrieval", "floor", "transfer", "floor"]
    assert [row.split()[0] for row in rows] == [ENGLISH, *data.languages, "mean"]
