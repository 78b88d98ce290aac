"""Decontamination and tokenization: recall, false positives and speed, next to datatrove and `tokenizers`.

Test items in the four layouts (MedQA, MedMCQA, PubMedQA, MMLU), written as JSONL evaluation files:
  - realistic items: real sentences of one half of the medical articles in ../shared/evaldata (JATS papers and
    WCXB's health pages), each sentence used once, in exam templates (vignette stems and question lines,
    PubMedQA contexts and long answers, short phrases as options);
  - background items up to --items (100,000 by default): words drawn from the same texts' vocabulary by
    frequency, in the same templates and lengths, to give the index its full size.
Clean documents (--clean, 10,000): runs of 1-6 paragraphs of the other half of the articles, so no item
sentence is in them. Planted documents: a clean document with one item inserted between two paragraphs,
verbatim, re-spaced (line breaks, doubled spaces, spaces around punctuation), re-cased, or with 1-2 word edits
(substitution, deletion, insertion) in every block of 13 words.

Measured in one run, on one core each:
  - curate's decontaminate step (its pure function on Parquet tables, in this process): index build,
    documents/s, recall per variant, false positives on the clean documents;
  - datatrove's NGramsDecontFilter (13-grams, its own index format written with its indexer's hashing) on the
    same documents, where it runs (its English word tokenizer needs spaCy: `make bench-deps`);
  - tokenization: curate's tokenize step (token ids, EOD, Megatron .bin/.idx) against the tokenizer's own
    encode_batch on the same texts, in tokens/s, with a BPE tokenizer trained here on the clean documents.

    .venv/bin/python benchmarks/decontam.py                   # 100,000 items, 10,000 clean documents
    .venv/bin/python benchmarks/decontam.py --items 20000 --planted 1000 --grid

Prints a table and writes benchmarks/results/decontam-<items>.json (machine and date inside).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from _results import write_results

REPO = Path(__file__).resolve().parents[1]
EVALDATA = REPO.parent / "shared" / "evaldata"
VARIANTS = ("verbatim", "respaced", "recased", "edited")
EDIT_BLOCK = 13  # 1-2 word edits in every block of this many words
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PHRASE_WORD = re.compile(r"^[A-Za-z][A-Za-z-]+$")

MEDQA_ENDINGS = (
    "Which of the following is the most likely diagnosis?",
    "Which of the following is the most appropriate next step in management?",
    "Which of the following is the most likely cause of this patient's condition?",
    "Which of the following is the mechanism of action of the most appropriate drug?",
    "Which of the following findings is most likely on further evaluation?",
)
MEDQA_OPENINGS = (
    "A {age}-year-old {sex} comes to the physician because of",
    "A {age}-year-old {sex} is brought to the emergency department because of",
    "A {age}-year-old {sex} presents with",
    "A previously healthy {age}-year-old {sex} is evaluated for",
)
MEDMCQA_FORMS = ("{q} is:", "{q} are all except:", "All of the following are true about {q} except:", "{q}?")
PUBMEDQA_FORMS = ("Does {q}?", "Is {q}?", "Are {q}?", "Do {q}?")


# ---------------------------------------------------------------------------------------------- texts


def medical_articles() -> list[list[str]]:
    """Paragraphs of each medical article of the evaluation data: JATS papers, WCXB's health pages."""
    articles = []
    for path in sorted(EVALDATA.glob("pmc_pdf_jats/**/fulltext.xml")):
        root = ET.parse(path).getroot()
        paragraphs = [" ".join("".join(p.itertext()).split()) for p in root.iter("p")]
        articles.append([p for p in paragraphs if len(p.split()) >= 12])
    selection = json.loads((EVALDATA / "html_wcxb" / "selection.json").read_text(encoding="utf-8"))
    health = {str(e["file_id"]) for e in selection if e.get("selection") == "health_medical"}
    for path in sorted(EVALDATA.glob("html_wcxb/*/ground-truth/*.json")):
        if path.stem not in health:
            continue
        text = json.loads(path.read_text(encoding="utf-8"))["ground_truth"].get("main_content") or ""
        paragraphs = [" ".join(p.split()) for p in text.split("\n")]
        articles.append([p for p in paragraphs if len(p.split()) >= 12])
    return [a for a in articles if a]


def split_articles(articles: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """Every other article for clean documents, the rest for test items: no paragraph is in both."""
    return articles[0::2], articles[1::2]


def clean_documents(articles: list[list[str]], count: int, rng: np.random.Generator) -> list[str]:
    """Documents of 1-6 consecutive paragraphs of one article."""
    docs = []
    for _ in range(count):
        article = articles[rng.integers(len(articles))]
        start = int(rng.integers(len(article)))
        docs.append("\n\n".join(article[start : start + int(rng.integers(1, 7))]))
    return docs


def sentences_of(articles: list[list[str]]) -> list[str]:
    """Distinct sentences of 6 words or more."""
    found = {s.strip() for a in articles for p in a for s in _SENTENCE.split(p)}
    return sorted(s for s in found if len(s.split()) >= 6)


# ---------------------------------------------------------------------------------------------- items


class ItemMaker:
    """Exam items in the four layouts from a stream of sentences (each used once) or of sampled words."""

    def __init__(self, sentences: list[str], rng: np.random.Generator):
        self.rng = rng
        self.sentences = list(sentences)
        rng.shuffle(self.sentences)
        counts = Counter(w for s in sentences for w in s.split())
        self.vocab = np.array(sorted(counts))
        weights = np.cumsum([counts[w] for w in self.vocab], dtype=np.float64)
        self.cumulative = weights / weights[-1]  # sampling by frequency: searchsorted, not rng.choice(p=)
        self.phrases = sorted(
            {
                " ".join(ws[i : i + k])
                for s in sentences
                for ws in [s.rstrip(".").split()]
                for k in (1, 2, 3)
                for i in range(0, len(ws) - k + 1, 3)
                if all(_PHRASE_WORD.match(w) for w in ws[i : i + k])
            }
        )
        self.real = True
        self.real_items = 0

    def _sentence(self, words: tuple[int, int] | None = None) -> str:
        """A real sentence (or its first words), else sampled words of a sentence's length."""
        low, high = words or (8, 30)
        length = int(self.rng.integers(low, high + 1))
        if self.real:
            if not self.sentences:
                raise IndexError("out of sentences")
            s = self.sentences.pop().split()
            return " ".join(s[:length] if words else s)
        picked = self.vocab[np.searchsorted(self.cumulative, self.rng.random(length))]
        return " ".join(picked.tolist()).capitalize() + "."

    def _options(self, k: int) -> list[str]:
        return [self.phrases[i] for i in self.rng.integers(len(self.phrases), size=k)]

    def medqa(self, n: int) -> dict:
        opening = MEDQA_OPENINGS[self.rng.integers(len(MEDQA_OPENINGS))].format(
            age=int(self.rng.integers(18, 90)), sex=("man", "woman")[self.rng.integers(2)]
        )
        body = " ".join(self._sentence() for _ in range(int(self.rng.integers(3, 7))))
        ending = MEDQA_ENDINGS[self.rng.integers(len(MEDQA_ENDINGS))]
        options = dict(zip("ABCDE", self._options(5), strict=True))
        return {
            "question": f"{opening} {body[0].lower()}{body[1:]} {ending}",
            "options": options,
            "answer": "A",
        }

    def medmcqa(self, n: int) -> dict:
        form = MEDMCQA_FORMS[self.rng.integers(len(MEDMCQA_FORMS))]
        q = self._sentence((6, 14)).rstrip(".")
        a, b, c, d = self._options(4)
        return {
            "id": f"mcq-{n}",
            "question": form.format(q=q),
            "opa": a,
            "opb": b,
            "opc": c,
            "opd": d,
            "cop": 1,
        }

    def pubmedqa(self, n: int) -> dict:
        form = PUBMEDQA_FORMS[self.rng.integers(len(PUBMEDQA_FORMS))]
        q = self._sentence((6, 14)).rstrip(".")
        contexts = [" ".join(self._sentence() for _ in range(2)) for _ in range(int(self.rng.integers(2, 4)))]
        return {
            "pubid": 30_000_000 + n,
            "question": form.format(q=q[0].lower() + q[1:]),
            "context": {
                "contexts": contexts,
                "labels": ["BACKGROUND", "RESULTS", "CONCLUSIONS"][: len(contexts)],
            },
            "long_answer": self._sentence(),
            "final_decision": "yes",
        }

    def mmlu(self, n: int) -> dict:
        q = self._sentence((10, 30)).rstrip(".")
        return {
            "question": q + "?",
            "subject": "clinical_knowledge",
            "choices": self._options(4),
            "answer": 0,
        }


def make_items(maker: ItemMaker, total: int) -> dict[str, list[dict]]:
    """Records per layout: real-sentence items while sentences last, then sampled-word items, round robin."""
    layouts = {"medqa": maker.medqa, "medmcqa": maker.medmcqa, "pubmedqa": maker.pubmedqa, "mmlu": maker.mmlu}
    out: dict[str, list[dict]] = {k: [] for k in layouts}
    n = 0
    while n < total:
        for name, make in layouts.items():
            if n >= total:
                break
            try:
                out[name].append(make(n))
                maker.real_items += maker.real
            except IndexError:
                maker.real = False
                out[name].append(make(n))
            n += 1
    return out


# ---------------------------------------------------------------------------------------------- planting


def respaced(text: str, rng: np.random.Generator) -> str:
    """Line breaks, doubled spaces and tabs between words; spaces around or removed after punctuation."""
    out = []
    for word in text.split():
        r = rng.random()
        sep = "\n" if r < 0.15 else "  " if r < 0.3 else "\t" if r < 0.35 else " "
        if word[-1:] in ",.;:?" and rng.random() < 0.5:
            word = word[:-1] + " " + word[-1]  # "word ," as a PDF extraction leaves it
        out.append(word + sep)
    return "".join(out).replace(" ,\n", ",").strip()


def recased(text: str, rng: np.random.Generator) -> str:
    """The whole text upper-, lower- or title-cased, or its words' case changed at random."""
    r = rng.random()
    if r < 0.25:
        return text.upper()
    if r < 0.5:
        return text.lower()
    if r < 0.75:
        return text.title()
    return " ".join(w.swapcase() if rng.random() < 0.5 else w for w in text.split(" "))


def edited(text: str, rng: np.random.Generator, vocab: np.ndarray) -> str:
    """1 or 2 edits (substitute, delete or insert a word) in every block of EDIT_BLOCK words."""
    words = text.split()
    out: list[str] = []
    for start in range(0, len(words), EDIT_BLOCK):
        block = words[start : start + EDIT_BLOCK]
        k = min(len(block), int(rng.integers(1, 3)))
        where = set(rng.choice(len(block), size=k, replace=False).tolist())
        for i, w in enumerate(block):
            if i not in where:
                out.append(w)
                continue
            op = rng.integers(3)
            new = str(vocab[rng.integers(len(vocab))])
            if op == 0:
                out.append(new)
            elif op == 2:
                out += [w, new]
    return " ".join(out)


def plant(host: str, item: str, variant: str, rng: np.random.Generator, vocab: np.ndarray) -> str:
    """The host document with the item (as the variant) between two of its paragraphs."""
    if variant == "respaced":
        item = respaced(item, rng)
    elif variant == "recased":
        item = recased(item, rng)
    elif variant == "edited":
        item = edited(item, rng, vocab)
    paragraphs = host.split("\n\n")
    at = int(rng.integers(len(paragraphs) + 1))
    return "\n\n".join(paragraphs[:at] + [item] + paragraphs[at:])


# ---------------------------------------------------------------------------------------------- runs


def write_evalsets(records: dict[str, list[dict]], folder: Path) -> list[Path]:
    """One JSONL evaluation file per layout."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for layout, rows in records.items():
        path = folder / f"{layout}_test.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


def corpus(clean: list[str], planted: list[tuple[str, str, str, str]]) -> pa.Table:
    """Clean documents (id clean:N) and planted ones (id VARIANT:N), as curate records."""
    from curate.schema import records_table

    rows = [{"id": f"clean:{n}", "text": t, "source": "clean"} for n, t in enumerate(clean)]
    rows += [{"id": doc_id, "text": t, "source": "planted"} for doc_id, _, _, t in planted]
    return records_table(rows)


def score(found: set[tuple[str, str, str]], planted: list[tuple[str, str, str, str]], n_clean: int) -> dict:
    """Recall per variant (the planted item found in its document) and clean documents flagged."""
    recall = {}
    for variant in VARIANTS:
        mine = [p for p in planted if p[0].startswith(variant)]
        recall[variant] = round(sum((d, b, i) in found for d, b, i, _ in mine) / max(len(mine), 1), 4)
    flagged = {d for d, _, _ in found if d.startswith("clean:")}
    return {"recall": recall, "false_positive_documents": len(flagged), "clean_documents": n_clean}


def run_curate(paths: list[Path], table: pa.Table, planted, n_clean: int, **params) -> dict:
    """curate's decontaminate step in this process: index build, then its pure function over the table."""
    from curate.decontam.stage import DecontaminateStage

    stage = DecontaminateStage(name="decontaminate", benchmarks=[str(p) for p in paths], **params)
    t0, c0 = time.perf_counter(), time.process_time()
    stage.prepare([], lambda fn, args: [fn(*a) for a in args], Path(tempfile.gettempdir()))
    build = (time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    _, _, records = stage.decontaminate(table)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    found = {(r["document"], r["benchmark"], r["item"]) for r in records}
    return {
        "parameters": {
            k: v for k, v in stage.params().items() if k not in ("benchmarks", "benchmarks_sha256")
        },
        "items": len(stage.index.item_ids),
        "items_unmatchable": int((stage.index.item_ngrams == 0).sum()),
        "indexed_ngrams": len(stage.index.keys),
        "index_mb": round(stage.index.nbytes / 1e6, 1),
        "index_seconds": round(build[0], 2),
        "index_cpu_seconds": round(build[1], 2),
        "documents": table.num_rows,
        "seconds": round(wall, 2),
        "documents_per_cpu_second": round(table.num_rows / cpu),
        **score(found, planted, n_clean),
    }


def run_datatrove(
    records: dict[str, list[dict]], texts: list[tuple[str, str]], planted, n_clean: int
) -> dict:
    """datatrove's NGramsDecontFilter (12-grams, spaCy word tokenizer) with an index made by its indexer's
    hashing of each item's text (its indexer class needs lighteval's task registry to run as a step)."""
    try:
        from datatrove.data import Document
        from datatrove.pipeline.decont import NGramsDecontConfig, NGramsDecontFilter
        from datatrove.utils.hashing import HashConfig, create_hash_func
        from datatrove.utils.text import ngrams, simplify_text
        from datatrove.utils.word_tokenizers import load_word_tokenizer
    except ImportError as exc:
        return {"skipped": f"datatrove's decontamination cannot run here: {exc}"}
    from curate.decontam.evalsets import item_of

    # Its default hash (xxhash of str) raises "Strings must be encoded before hashing" with xxhash 4.1: the
    # sha1 option takes str.
    config = NGramsDecontConfig(hash_config=HashConfig(hash_fc="sha1"))
    try:
        tokenizer = load_word_tokenizer("en")
        tokenizer.word_tokenize("warm up spaCy")
    except Exception as exc:  # noqa: BLE001 - no spaCy: say so in the results
        return {"skipped": f"datatrove's English word tokenizer needs spaCy (make bench-deps): {exc}"}
    hash_func = create_hash_func(config.hash_config)
    t0 = time.perf_counter()
    index = tempfile.mkdtemp(prefix="dt-decont-")
    for layout, rows in records.items():
        hashes = set()
        for n, r in enumerate(rows):
            text = item_of(r, layout, layout, Path(layout), str(n)).text
            tokens = tokenizer.word_tokenize(simplify_text(text, config.norm_config))
            hashes.update(hash_func(" ".join(g)) for g in ngrams(tokens, config.n_grams))
        array = np.array(sorted(hashes), dtype=config.hash_config.np_descr)
        array.tofile(f"{index}/{layout}.index.hashes")
    build = time.perf_counter() - t0
    step = NGramsDecontFilter(index_folder=index, config=config)
    t0, c0 = time.perf_counter(), time.process_time()
    found = set()
    for doc_id, text in texts:
        doc = Document(text=text, id=doc_id)
        verdict = step.filter(doc)
        if verdict is not True:
            found.add((doc_id, doc.metadata["contaminated_task"], None))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # datatrove names the task, not the item: a planted document counts as found when flagged with its task.
    by_doc = {d: b for d, b, _ in found}
    hits = {(d, b, i) for d, b, i, _ in planted if by_doc.get(d) == b}
    hits |= {(d, b, "") for d, b in by_doc.items() if d.startswith("clean:")}
    return {
        "parameters": {
            "n_grams": config.n_grams,
            "tokenizer": "spaCy (en)",
            "hash": "sha1 (xxhash fails on str)",
        },
        "index_seconds": round(build, 2),
        "documents": len(texts),
        "seconds": round(wall, 2),
        "documents_per_cpu_second": round(len(texts) / cpu),
        **score(hits, planted, n_clean),
    }


def run_tokenize(texts: list[str], folder: Path) -> dict:
    """curate's tokenize step (one task, in this process) against the tokenizer's own encode_batch."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from curate.io import write_parquet
    from curate.schema import records_table
    from curate.stage import Task
    from curate.train.tokenize import TokenizeStage

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=32_000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    write_parquet(
        records_table([{"id": f"t:{n}", "text": t, "source": "t"} for n, t in enumerate(texts)]),
        folder / "part-0.parquet",
    )
    c0 = time.process_time()
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    anchor_cpu = time.process_time() - c0
    tokens = sum(len(e.ids) for e in encodings)
    stage = TokenizeStage(name="tokenize", tokenizer=str(folder / "tokenizer.json"))
    c0 = time.process_time()
    result = stage.process(Task("part-0", (str(folder / "part-0.parquet"),)))
    curate_cpu = time.process_time() - c0
    assert int(result.kept.column("token_count").to_numpy().sum()) == tokens
    return {
        "documents": len(texts),
        "tokens": tokens,
        "vocab_size": tokenizer.get_vocab_size(),
        "encode_batch_tokens_per_cpu_second": round(tokens / anchor_cpu),
        "curate_tokens_per_cpu_second": round(tokens / curate_cpu),
        "curate_vs_encode_batch": round(anchor_cpu / curate_cpu, 3),
    }


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000, help="test items in all (default 100,000)")
    parser.add_argument("--clean", type=int, default=10_000, help="clean documents (default 10,000)")
    parser.add_argument("--planted", type=int, default=2_000, help="planted documents per variant")
    parser.add_argument("--datatrove-docs", type=int, default=2_000, help="documents datatrove filters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--grid", action="store_true", help="also other n-gram sizes and shares (and GPT-3's rule)"
    )
    args = parser.parse_args()
    if not EVALDATA.is_dir():
        sys.exit(f"evaluation data not found at {EVALDATA}")
    os.environ["RAYON_NUM_THREADS"] = "1"  # tokenizers' batch encoding on one core, like everything here
    sys.path.insert(0, str(REPO))
    rng = np.random.default_rng(args.seed)
    clean_articles, item_articles = split_articles(medical_articles())
    maker = ItemMaker(sentences_of(item_articles), rng)
    t0 = time.perf_counter()
    records = make_items(maker, args.items)
    print(
        f"{args.items:,} items ({maker.real_items:,} of real sentences) in {time.perf_counter() - t0:.1f} s"
    )
    work = Path(tempfile.mkdtemp(prefix="decontam-bench-"))
    paths = write_evalsets(records, work / "eval")
    from curate.decontam.evalsets import parse_evalsets, read_items

    items = [it for e in parse_evalsets([str(p) for p in paths]) for it in read_items(e)]
    clean = clean_documents(clean_articles, args.clean, rng)
    hosts = clean_documents(clean_articles, args.planted, rng)
    planted = []
    for variant in VARIANTS:
        picks = rng.choice(len(items), size=len(hosts), replace=False)
        for n, (host, i) in enumerate(zip(hosts, picks, strict=True)):
            item = items[int(i)]
            text = plant(host, item.text, variant, rng, maker.vocab)
            planted.append((f"{variant}:{n}", item.benchmark, item.id, text))
    table = corpus(clean, planted)
    results: dict = {
        "arguments": vars(args),
        "items": len(items),
        "clean_documents": len(clean),
        "planted_documents": len(planted),
        "items_of_real_sentences": maker.real_items,
    }
    results["curate"] = run_curate(paths, table, planted, len(clean))
    _print("curate", results["curate"])
    if args.grid:
        results["grid"] = []
        for ngram, share, least in [(13, 0.0, 1), (8, 0.1, 3), (6, 0.15, 3), (5, 0.15, 3), (5, 0.3, 3)]:
            run = run_curate(
                paths, table, planted, len(clean), ngram=ngram, min_share=share, min_ngrams=least
            )
            results["grid"].append(run)
            _print(f"curate n={ngram} share={share} min={least}", run)
    # datatrove on a sample: its spaCy tokenizer makes it about 50x slower.
    k = min(args.datatrove_docs, table.num_rows)
    sample = sorted(rng.choice(table.num_rows, size=k, replace=False).tolist())
    texts = [(table.column("id")[i].as_py(), table.column("text")[i].as_py()) for i in sample]
    ids = {d for d, _ in texts}
    results["datatrove"] = run_datatrove(
        records, texts, [p for p in planted if p[0] in ids], sum(d.startswith("clean:") for d in ids)
    )
    _print("datatrove", results["datatrove"])
    results["tokenize"] = run_tokenize(clean, work)
    print("tokenize", json.dumps(results["tokenize"]))
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    write_results(f"decontam-{args.items}", results)


def _print(name: str, run: dict) -> None:
    if "skipped" in run:
        print(f"{name:<32} skipped: {run['skipped']}")
        return
    recall = " ".join(f"{k} {v:.3f}" for k, v in run["recall"].items())
    print(
        f"{name:<32} {run['documents_per_cpu_second']:>7,} docs/s/core  recall: {recall}  "
        f"false positives: {run['false_positive_documents']}/{run['clean_documents']}"
    )


if __name__ == "__main__":
    main()
