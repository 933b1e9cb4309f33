"""Sentence-aligned English-translation pairs from the gettext catalogues a Debian system
installs (``/usr/share/locale/<locale>/LC_MESSAGES/<domain>.mo``).

Every translated program carries its messages in dozens of languages: ``msgid`` is the
English source, ``msgstr`` its translation, the catalogue's file name (``coreutils``,
``gtk20``) its domain. What is kept is a sentence that says the same in both languages:

- plural entries (their forms do not align one to one) are skipped, message contexts
  (``ctxt\\x04msgid``) stripped;
- format strings (``%s``, ``%-5d``, ``%(name)s``, ``{0}``, ``${VAR}``) are dropped: their
  text is a template, and ``%s`` alone would tie a pair across languages;
- entries under ``min_chars`` characters or three words (menu labels, identifiers), over
  ``max_chars`` (whole help screens), untranslated ones (empty, or equal to the English),
  and markup (tags, entities, less than 60% letters) are dropped;
- whitespace is normalised (help texts are wrapped and indented), mnemonics removed;
- duplicates: an English sentence found in two domains has no single label and is
  dropped; spellings that differ only in case or punctuation keep one spelling; in a
  language, one translation per English sentence and one English sentence per
  translation (else retrieval has two right answers) are kept.

``LOCALE_FOLDERS`` maps our language codes to Debian's locale folders; a domain is read
from the first folder of its language that has it.
"""
from __future__ import annotations

import gettext
import hashlib
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from xlmr_plugin.evaluation.crosslingual_set import ENGLISH, CrosslingualSet, Pair

logger = logging.getLogger(__name__)

LOCALE_ROOT = Path("/usr/share/locale")
# our code (CC-100's) -> Debian's locale folders, first preferred; a code not listed is its own folder
LOCALE_FOLDERS: Dict[str, Tuple[str, ...]] = {
    "nb": ("nb", "nb_NO", "no"),
    "pt": ("pt", "pt_PT", "pt_BR"),
    "sr": ("sr",),  # Cyrillic, as CC-100's sr; sr@latin is the Latin script
    "zh": ("zh_CN", "zh_Hans"),  # Simplified, as CC-100's zh-Hans
    "zh-Hans": ("zh_CN", "zh_Hans"),
    "zh-Hant": ("zh_TW", "zh_Hant", "zh_HK"),
}

FORMAT = re.compile(
    r"%(\(\w+\))?[-+ #0']*(\d+\$)?(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspnm%]"
    r"|%<\w+>|%\d|\{\w*(:[^{}]*)?\}|\$\{?[A-Za-z_]\w*"
)
MARKUP = re.compile(r"<[A-Za-z/!?][^>]*>|&[A-Za-z]+;|&#\d+;")
MIN_LETTERS = 0.6  # share of letters among the non-space characters of a sentence


@dataclass(frozen=True)
class Filters:
    """What makes an English entry a sentence (the translation is taken as it comes)."""

    min_chars: int = field(default=20, metadata={"help": "shortest English sentence, in characters"})
    max_chars: int = field(default=200, metadata={"help": "longest English sentence, in characters"})
    min_words: int = field(default=3, metadata={"help": "fewest words of an English sentence"})


def locale_folders(lang: str) -> Tuple[str, ...]:
    return LOCALE_FOLDERS.get(lang, (lang,))


def catalogue_files(lang: str, root: Path = LOCALE_ROOT) -> Dict[str, Path]:
    """domain -> catalogue of ``lang``, in domain order; aliases (symbolic links) left out."""
    found: Dict[str, Path] = {}
    for folder in locale_folders(lang):
        for path in sorted((root / folder / "LC_MESSAGES").glob("*.mo")):
            if not path.is_symlink():
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def read_catalogue(path: Path) -> Dict[str, str]:
    """msgid -> msgstr of a compiled catalogue, plural entries skipped, contexts stripped.

    Raises ValueError for a catalogue Python's gettext cannot decode (a header that is
    not in its declared charset)."""
    try:
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
    except (UnicodeDecodeError, OSError) as error:
        raise ValueError(f"{path}: unreadable catalogue ({error})") from error
    return {key.split("\x04", 1)[-1]: value for key, value in catalog.items() if isinstance(key, str)}


MNEMONIC = re.compile(r"\(_\w\)|(?<!\w)_(?=\w)")  # GTK's "_Open", CJK's "開く(_O)"


def normalise(text: str) -> str:
    """One line, single spaces, without the keyboard mnemonics of menu labels."""
    return " ".join(MNEMONIC.sub("", text).split())


def rejection(msgid: str, msgstr: str, filters: Filters = Filters()) -> Optional[str]:
    """Why a (normalised) entry is not a sentence pair, or None if it is one."""
    if FORMAT.search(msgid) or FORMAT.search(msgstr):
        return "format"
    if len(msgid) < filters.min_chars or len(msgid.split()) < filters.min_words:
        return "short"
    if len(msgid) > filters.max_chars:
        return "long"
    if not msgstr or msgstr == msgid:
        return "untranslated"
    visible = msgid.replace(" ", "")
    if MARKUP.search(msgid) or MARKUP.search(msgstr) or sum(c.isalpha() for c in visible) < MIN_LETTERS * len(visible):
        return "markup"
    return None


def spelling(text: str) -> str:
    """What two spellings of one sentence share: its letters and digits, case-folded."""
    return "".join(c for c in text.casefold() if c.isalnum())


def digest(text: str, salt: str = "") -> int:
    """A stable number for a sentence (Python's hash() changes from run to run)."""
    return int(hashlib.sha256(f"{salt}{text}".encode("utf-8")).hexdigest()[:16], 16)


def is_test(english: str, test_percent: int) -> bool:
    """The fixed split: by the English sentence alone, so train and test never share one."""
    return digest(english, "split:") % 100 < test_percent


def candidate_pairs(lang: str, filters: Filters, root: Path, rejected: Counter, unreadable: List[str]) -> List[Pair]:
    """The filtered pairs of one language, before duplicates are resolved."""
    pairs = []
    for domain, path in catalogue_files(lang, root).items():
        try:
            entries = read_catalogue(path)
        except ValueError as error:
            logger.warning("%s", error)
            unreadable.append(str(path))
            continue
        for msgid, msgstr in entries.items():
            msgid, msgstr = normalise(msgid), normalise(msgstr)
            if not msgid:  # the catalogue's header
                continue
            reason = rejection(msgid, msgstr, filters)
            if reason:
                rejected[reason] += 1
            else:
                pairs.append(Pair(domain, msgid, msgstr))
    return pairs


def resolve_duplicates(pairs: Dict[str, List[Pair]], rejected: Counter) -> Dict[str, List[Pair]]:
    """One label per English sentence, one spelling per sentence, one-to-one pairs per language."""
    domains, spellings = defaultdict(set), defaultdict(set)
    for lang_pairs in pairs.values():
        for pair in lang_pairs:
            domains[spelling(pair.english)].add(pair.domain)
            spellings[spelling(pair.english)].add(pair.english)
    kept_english = {min(texts) for key, texts in spellings.items() if len(domains[key]) == 1}
    resolved = {}
    for lang, lang_pairs in pairs.items():
        seen_english, seen_translation, kept = set(), set(), []
        for pair in sorted(lang_pairs, key=lambda p: (p.english, p.translation)):
            if pair.english not in kept_english:
                rejected["duplicate"] += 1
            elif pair.english in seen_english or spelling(pair.translation) in seen_translation:
                rejected["duplicate"] += 1
            else:
                seen_english.add(pair.english)
                seen_translation.add(spelling(pair.translation))
                kept.append(pair)
        resolved[lang] = kept
    return resolved


def by_digest(pairs: Iterable[Pair]) -> List[Pair]:
    """A fixed pseudo-random order: the first n of it are a fixed sample of n."""
    return sorted(pairs, key=lambda p: (digest(p.english), p.translation))


@dataclass(frozen=True)
class Sizes:
    """How much of the pairs each measure uses: enough to rank checkpoints, little enough
    to score at every validation."""

    max_pairs: int = field(default=200, metadata={"help": "retrieval pairs per language (XTREME's Tatoeba has 1000)"})
    min_pairs: int = field(default=50, metadata={"help": "a language with fewer pairs is left out"})
    domains: int = field(default=4, metadata={"help": "transfer classes: catalogue domains"})
    train_per_class: int = field(default=100, metadata={"help": "English training sentences per domain, at most"})
    test_per_class: int = field(default=25, metadata={"help": "test sentences per domain and language, at most"})
    min_per_class: int = field(default=10, metadata={"help": "a language with fewer test sentences in a domain is left out of the transfer measure"})
    test_percent: int = field(default=50, metadata={"help": "share of English sentences in the test split"})


def knobs(kind) -> Dict[str, Tuple[int, str]]:
    """name -> (default, help) of ``Filters`` or ``Sizes``: the CLI's flags."""
    return {f.name: (f.default, f.metadata["help"]) for f in fields(kind)}


def build_crosslingual_set(langs: List[str], root: Path = LOCALE_ROOT, filters: Filters = Filters(),
                           sizes: Sizes = Sizes()) -> CrosslingualSet:
    """The pairs of ``langs`` (those with enough of them) and the transfer sets."""
    rejected, unreadable = Counter(), []
    found = {lang: candidate_pairs(lang, filters, root, rejected, unreadable) for lang in langs if lang != ENGLISH}
    pairs = resolve_duplicates(found, rejected)
    languages = [lang for lang in pairs if len(pairs[lang]) >= sizes.min_pairs]
    left_out = {lang: len(pairs[lang]) for lang in pairs if lang not in languages}
    if left_out:
        logger.info("left out, fewer than %d pairs: %s", sizes.min_pairs,
                    ", ".join(f"{lang} ({n})" for lang, n in left_out.items()))
    if len(languages) < 1:
        raise ValueError(f"no language of {','.join(langs)} has {sizes.min_pairs} pairs in {root}")
    test = {lang: [p for p in pairs[lang] if is_test(p.english, sizes.test_percent)] for lang in languages}
    english = {p.english: p for lang in languages for p in pairs[lang]}  # each English sentence has one domain
    english_test = [Pair(p.domain, p.english, p.english) for p in english.values()
                    if is_test(p.english, sizes.test_percent)]
    english_train = [Pair(p.domain, p.english, p.english) for p in english.values()
                     if not is_test(p.english, sizes.test_percent)]
    domains = choose_domains(test, sizes)
    transfer_languages = [lang for lang in languages if min(per_domain(test[lang], domains)) >= sizes.min_per_class]
    transfer_test = {ENGLISH: balanced(english_test, domains, sizes.test_per_class)}
    transfer_test.update({lang: balanced(test[lang], domains, sizes.test_per_class) for lang in transfer_languages})
    return CrosslingualSet(
        languages=languages,
        domains=domains,
        retrieval={lang: by_digest(pairs[lang])[: sizes.max_pairs] for lang in languages},
        transfer_train=balanced(english_train, domains, sizes.train_per_class),
        transfer_test=transfer_test,
        meta={
            "source": "gettext", "locale_root": str(root), "filters": vars(filters), "sizes": vars(sizes),
            "pairs_found": {lang: len(pairs[lang]) for lang in pairs},
            "left_out": left_out, "rejected": dict(sorted(rejected.items())), "unreadable": sorted(unreadable),
            "catalogues": {lang: sorted(catalogue_files(lang, root)) for lang in languages},
        },
    )


def per_domain(pairs: List[Pair], domains: List[str]) -> List[int]:
    counts = Counter(p.domain for p in pairs)
    return [counts[d] for d in domains]


def choose_domains(test: Dict[str, List[Pair]], sizes: Sizes) -> List[str]:
    """The ``sizes.domains`` domains with test sentences in most languages, then the most
    in the poorest language: a label every language can be scored on."""
    counts = {lang: Counter(p.domain for p in pairs) for lang, pairs in test.items()}
    names = sorted({d for c in counts.values() for d in c})
    rank = {d: (sum(c[d] >= sizes.min_per_class for c in counts.values()), min(c[d] for c in counts.values()))
            for d in names}
    return sorted(sorted(names, key=lambda d: rank[d], reverse=True)[: sizes.domains])


def balanced(pairs: List[Pair], domains: List[str], per_class: int) -> List[Pair]:
    """As many pairs of each domain (the poorest domain's count, at most ``per_class``),
    the first of each in digest order."""
    ordered = {d: [p for p in by_digest(pairs) if p.domain == d] for d in domains}
    n = min([per_class, *(len(ps) for ps in ordered.values())])
    return [p for d in domains for p in ordered[d][:n]]
