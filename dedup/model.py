"""The trained model as one estimator: field encoder + combiner, fit on records, saved as a directory.

scikit-learn style: settings come in through ``__init__`` (the job config), ``fit`` does the work,
learned state lives in ``encoder_`` and ``combiner_``, and ``save``/``load`` round-trip exactly.
Weights are stored as a plain tensor state dict and loaded with ``weights_only=True``, so opening
a model file never executes pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from dedup import __version__
from dedup.blocking import (
    CandidatePairs,
    found_by_embedding,
    has_embedding_pass,
    with_embedding_passes,
    with_neighbours,
)
from dedup.combiner import Combiner
from dedup.config import DedupConfig, FieldKind, TrainingConfig, config_to_yaml, parse_config
from dedup.corrupt import corrupt_values
from dedup.encoder import FieldEmbeddings, SiameseEncoder, to_codepoints, tokenise
from dedup.errors import ModelError
from dedup.evidence import LONG_TEXT_WORDS, PairEvidence
from dedup.frequencies import FieldStatistics, field_statistics, number_closeness, value_pair_similarity
from dedup.io import replace_directory
from dedup.normalise import read_numbers
from dedup.scoring import compare_pairs, embed_records
from dedup.threads import map_side_by_side
from dedup.training import drawn_rows, examples_of, train_encoder

FORMAT_VERSION = 3  # 3: meta.json's manifest checksums every file
SYNTHETIC_PAIRS = 5000
MIN_STEPS = 20


class DedupModel:
    """Field-wise Siamese encoder plus match-probability combiner for one config."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config

    # ---- training -------------------------------------------------------------------------
    def fit(
        self,
        normalised: pl.DataFrame,
        pairs: CandidatePairs,
        labels: np.ndarray | None = None,
        pair_labels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> DedupModel:
        """Train on normalised records and their rule-pass candidate pairs.

        ``labels`` (optional, one entity label per record, None for records held out) switches
        to supervised training: positives and negatives come from labelled candidate pairs.
        ``pair_labels`` (optional, a person's answers: left rows, right rows, is-match) correct
        the fitted combiner (``Combiner.fit_pair_labels``). They do not join the encoder's
        examples: measured on the real sets, a few dozen answers among the encoder's thousands
        of self-training pairs moved the whole fit unpredictably (sigmod_x2 fell from 0.34 to
        0.12 pair-F1 with one copy of each answer), while the combiner's correction alone helped.
        Embedding passes need an encoder, so the order is: encoder (self-supervised, no pairs
        needed) -> embedding neighbours added to the candidates -> combiner -> self-training
        (confident matches become positives, confident non-matches hard negatives) -> the final
        encoder's neighbours -> final combiner, fitted on the pairs scoring will see. With
        ``training.self_training`` off, the first encoder trains every step and its combiner is
        the final one: one encoding, one neighbour search and one EM fit fewer.
        """
        cfg, settings = self.config, self.config.training
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self._total_records = normalised.height
        statistics = field_statistics(normalised, cfg)  # rarity over the whole input, before sampling
        everyone, everyone_statistics, all_rule_pairs = normalised, statistics, pairs
        known_all = int(np.not_equal(labels, None).sum()) if labels is not None else 0
        sample = training_sample(pairs, normalised.height, settings.max_pairs, settings.random_pairs, rng)
        self._neighbour_share = 1.0  # share of the embedding passes' pairs training keeps
        if sample is not None:
            # embedding passes look for neighbours among the sampled records only; there are
            # about N / rows of them for each found, and each kept pair stands for pair_weight
            self._neighbour_share = min(1.0, normalised.height / (len(sample.rows) * sample.pair_weight))
            normalised, pairs, statistics = normalised[sample.rows], sample.pairs, statistics.take(sample.rows)
            labels = labels[sample.rows] if labels is not None else None
            self._pair_weight, self._u_rows = sample.pair_weight, sample.u_rows
            self._sample_random: tuple[np.ndarray, np.ndarray] | None = sample.random
        else:
            self._pair_weight, self._u_rows = 1.0, np.arange(normalised.height)
            self._sample_random = None
        rule_pairs = pairs
        encoder = SiameseEncoder(
            dict(cfg.fields), settings.buckets, settings.dim, settings.max_chars, settings.text_max_chars
        )
        steps = training_steps(settings, normalised)
        self.training_loss_: list[float] = []

        if labels is not None:
            left, right, same = _labelled_pairs(pairs, labels)
            examples = self._examples(encoder, normalised, rng, (left[same], right[same]), (left[~same], right[~same]))
            self.training_loss_ += train_encoder(encoder, examples, settings, rng, steps)
            embeddings = embed_records(encoder, normalised)
            pairs = self._complete(rule_pairs, embeddings)
            left, right, same = _labelled_pairs(pairs, labels)
            known = np.intersect1d(np.flatnonzero(np.not_equal(labels, None)), self._u_rows)
            random, (a, b) = self._random_evidence(embeddings, statistics, known, rng)  # u: every pair
            combiner = self._combiner().fit_edges(random, *self._agreement(statistics))
            combiner.fit_labelled(
                compare_pairs(embeddings, statistics, left, right),
                same,
                random.take(labels[a] != labels[b]),  # known non-matches only
                known_all * (known_all - 1) / 2,
                self._pair_weight,
            )
        else:
            # with self-training, half the steps on synthetic duplicates first; without, all of them
            warmup = max(1, steps // 2) if settings.self_training else steps
            examples = self._examples(encoder, normalised, rng)
            self.training_loss_ += train_encoder(encoder, examples, settings, rng, warmup)
            del examples  # what each step below no longer needs goes before it (at 1M records: the peak)
            embeddings = embed_records(encoder, normalised)  # once per encoder state: the costly part
            pairs = self._complete(rule_pairs, embeddings)
            # with self-training provisional: it only has to pick the pairs self-training learns from
            share = 0.25 if settings.self_training else 1.0
            combiner = self._fit_em(encoder, normalised, statistics, embeddings, pairs, rng, random_share=share)
            if settings.self_training:
                # what the model is sure of teaches the encoder what real duplicates (and real
                # near-misses) look like in this data
                proba = combiner.predict_proba(compare_pairs(embeddings, statistics, pairs.left, pairs.right))
                confident = settings.self_training_confidence
                sure, unlike = proba >= confident, proba < 1 - confident
                examples = self._examples(
                    encoder,
                    normalised,
                    rng,
                    (pairs.left[sure], pairs.right[sure]),
                    (pairs.left[unlike], pairs.right[unlike]),
                )
                del embeddings, pairs, proba, sure, unlike
                self._searched = None
                self.training_loss_ += train_encoder(encoder, examples, settings, rng, steps - warmup)
                del examples
                embeddings = embed_records(encoder, normalised)
                pairs = self._complete(rule_pairs, embeddings)
                combiner = self._fit_em(encoder, normalised, statistics, embeddings, pairs, rng)
        if pair_labels is not None:
            left, right, is_match = pair_labels
            rows = np.unique(np.concatenate([left, right]))
            evidence = compare_pairs(
                embed_records(encoder, everyone[rows]),
                everyone_statistics.take(rows),
                np.searchsorted(rows, left),
                np.searchsorted(rows, right),
            )
            combiner.fit_pair_labels(evidence, is_match, cfg.threshold)
        self.encoder_, self.combiner_ = encoder, combiner
        self.statistics_ = everyone_statistics  # the input's, for its scoring (not saved with the model)
        # the final encoder's candidates over every record are what scoring this input needs:
        # kept (not saved with the model) so the score stage need not search the neighbours again
        self.candidates_ = None
        if has_embedding_pass(cfg) and sample is None:
            self.candidates_ = pairs
        elif has_embedding_pass(cfg) and len(sample.rows) == everyone.height:
            # the sample drew every record (up to ``random_pairs`` records it does): the last
            # search saw them all, so its neighbours plus every rule pair are scoring's candidates
            self.candidates_ = with_neighbours(all_rule_pairs, self._searched, cfg)
        return self

    def _combiner(self) -> Combiner:
        return Combiner(self.config.field_names, em_iterations=self.config.training.em_iterations)

    def _agreement(self, statistics: FieldStatistics) -> tuple[list[float], list[np.ndarray]]:
        """Per field: the chance of an exact agreement, and each value's frequency."""
        exact = statistics.exact_u or {}
        return [exact.get(f, 0.0) for f in self.config.fields], [statistics.frequency[f] for f in self.config.fields]

    def _complete(self, rule_pairs: CandidatePairs, embeddings: FieldEmbeddings) -> CandidatePairs:
        """In training: the sample's candidates plus the embedding neighbours among its records."""
        pairs = self.candidates(rule_pairs, embeddings)
        self._searched = pairs  # before the share is taken: what scoring would find (see ``fit``)
        share = self._neighbour_share
        if share >= 1.0:
            return pairs
        # training on a sample: the neighbours found stand for pair_weight pairs each, as the
        # sampled rule pairs do, so only their share is kept (a fixed draw per config seed)
        found = found_by_embedding(pairs, self.config)
        keep = ~found | (np.random.default_rng(self.config.seed + 1).random(len(pairs)) < share)
        return CandidatePairs(
            pairs.left[keep], pairs.right[keep], pairs.pass_index[keep], pairs.pass_names, pairs.pass_counts
        )

    def candidates(self, rule_pairs: CandidatePairs, embeddings: FieldEmbeddings) -> CandidatePairs:
        """The full candidate pairs: rule passes plus this model's embedding neighbours."""
        if not has_embedding_pass(self.config):
            return rule_pairs
        return with_embedding_passes(self.config, lambda: rule_pairs, lambda: embeddings)

    def _examples(self, encoder, normalised, rng, positives=None, negatives=None):
        """Each field's ``field_examples``: the draws field after field (the order the generator
        was always used in), then the fields built side by side (``side_by_side``)."""
        fields, most = list(self.config.fields), self.config.training.max_values
        draws = [drawn_rows(normalised.height, most, rng, positives, negatives) for _ in fields]
        built = map_side_by_side(lambda f, drawn: examples_of(encoder, normalised[f], f, *drawn), fields, draws)
        return dict(zip(fields, built, strict=True))

    def _fit_em(self, encoder, normalised, statistics, embeddings, pairs, rng, random_share: float = 1.0) -> Combiner:
        candidates = compare_pairs(embeddings, statistics, pairs.left, pairs.right)
        seed = synthetic_duplicate_evidence(encoder, normalised, statistics, embeddings, rng, SYNTHETIC_PAIRS)
        random, _ = self._random_evidence(embeddings, statistics, self._u_rows, rng, exclude=pairs)
        if random_share < 1.0:
            random = random.take(np.arange(int(len(random) * random_share)))
        n = self._total_records
        combiner = self._combiner().fit_edges(random, *self._agreement(statistics))
        return combiner.fit_em(
            candidates, random, seed, n * (n - 1) / 2, self._pair_weight, records=n, pairs=(pairs.left, pairs.right)
        )

    def _random_evidence(
        self,
        embeddings: FieldEmbeddings,
        statistics: FieldStatistics,
        rows: np.ndarray,
        rng: np.random.Generator,
        exclude: CandidatePairs | None = None,
    ) -> tuple[PairEvidence, tuple[np.ndarray, np.ndarray]]:
        """Evidence (and row positions) of random pairs among ``rows`` that are not in ``exclude``:
        the population blocking left out (candidates stand for themselves). On a training sample
        they were drawn with the sample, where all candidates were known."""
        if self._sample_random is not None:
            a, b = self._sample_random
            keep = np.isin(a, rows) & np.isin(b, rows)
            a, b = a[keep], b[keep]
        else:
            empty = CandidatePairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16), ())
            a, b = random_non_candidates(rows, self.config.training.random_pairs, exclude or empty, rng)
        return compare_pairs(embeddings, statistics, a, b), (a, b)

    # ---- inference ------------------------------------------------------------------------
    def embed(self, normalised: pl.DataFrame) -> FieldEmbeddings:
        return embed_records(self.encoder_, normalised)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model directory atomically: weights, combiner tables, config, and
        ``meta.json`` last, whose ``files`` manifest holds every other file's SHA-256."""

        def build(tmp: Path) -> None:
            weights = io.BytesIO()  # written as plain bytes: a full disk is then an OSError, not torch's
            torch.save(self.encoder_.state_dict(), weights)
            (tmp / "encoder.pt").write_bytes(weights.getvalue())
            (tmp / "combiner.json").write_text(json.dumps(self.combiner_.to_dict()))
            (tmp / "config.yaml").write_text(config_to_yaml(self.config))
            files = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in MODEL_FILES}
            meta = {
                "format_version": FORMAT_VERSION,
                "dedup_version": __version__,
                "fields": {f: k.value for f, k in self.config.fields.items()},
                "files": files,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))

        return replace_directory(build, path)

    @classmethod
    def load(cls, path: str | Path, expect: DedupConfig | None = None) -> DedupModel:
        """Load a saved model; with ``expect``, fail unless it was trained for the same fields.

        Every file is read once, with a size limit, checked against the manifest in
        ``meta.json`` and parsed from the bytes that were checked; weights and tables must be
        finite. Anything else is a one-line ``ModelError`` naming the directory and file.
        """
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: no such model directory")
        meta = _json_object(path, "meta.json", _read_model_file(path, "meta.json"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{path}: model format {meta.get('format_version')} is not supported "
                f"(this dedup reads format {FORMAT_VERSION}); retrain the model"
            )
        manifest = meta.get("files")
        if not isinstance(manifest, dict) or set(manifest) != set(MODEL_FILES):
            raise ModelError(f"{path}: meta.json has no valid file manifest")
        raw = {}
        for name in MODEL_FILES:
            raw[name] = _read_model_file(path, name)
            if hashlib.sha256(raw[name]).hexdigest() != manifest[name]:
                raise ModelError(f"{path}: {name} does not match its checksum in meta.json (truncated or modified)")
        try:
            text = raw["config.yaml"].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"{path}: config.yaml is not UTF-8 text") from None
        config = parse_config(text, origin=str(path / "config.yaml"))
        try:
            combiner = Combiner.from_dict(_json_object(path, "combiner.json", raw["combiner.json"]))
        except ModelError:
            raise
        except Exception as exc:  # a table of the wrong shape or type
            raise ModelError(f"{path}: damaged combiner.json ({type(exc).__name__}: {exc})") from None
        if not all(
            np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in (combiner.m_, combiner.u_, combiner.prior_)
        ):
            raise ModelError(f"{path}: combiner.json holds non-finite weights")
        if expect is not None:
            want = {f: k.value for f, k in expect.fields.items()}
            if meta.get("fields") != want:
                raise ModelError(f"{path}: model was trained for fields {meta.get('fields')}, the config has {want}")
        s = config.training
        encoder = SiameseEncoder(dict(config.fields), s.buckets, s.dim, s.max_chars, s.text_max_chars)
        try:
            state = torch.load(io.BytesIO(raw["encoder.pt"]), weights_only=True)
            encoder.load_state_dict(state)
        except Exception as exc:
            raise ModelError(f"{path}: cannot load encoder weights ({type(exc).__name__})") from None
        if not all(torch.isfinite(t).all() for t in encoder.state_dict().values()):
            raise ModelError(f"{path}: encoder.pt holds non-finite weights")
        encoder.eval()
        model = cls(expect or config)
        model.encoder_, model.combiner_ = encoder, combiner
        return model


MODEL_FILES = ("encoder.pt", "combiner.json", "config.yaml")  # meta.json holds their checksums
MAX_MODEL_FILE = {"encoder.pt": 4 << 30}  # bytes; the other files are small
MAX_SMALL_FILE = 64 << 20


def _read_model_file(path: Path, name: str) -> bytes:
    """A model file's bytes: a regular file (not a directory or a pipe) of bounded size."""
    target = path / name
    try:
        info = target.stat()
    except FileNotFoundError:
        raise ModelError(f"{path}: not a dedup model directory (missing {name})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{path}: {name} is not a regular file")
    limit = MAX_MODEL_FILE.get(name, MAX_SMALL_FILE)
    if info.st_size > limit:
        raise ModelError(f"{path}: {name} is {info.st_size:,} bytes, more than a model file can be ({limit:,})")
    with open(target, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ModelError(f"{path}: {name} is larger than a model file can be ({limit:,} bytes)")
    return data


def _json_object(path: Path, name: str, data: bytes) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: damaged {name} ({exc})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: damaged {name} (expected an object, found {type(value).__name__})")
    return value


def training_steps(settings: TrainingConfig, normalised: pl.DataFrame) -> int:
    """Steps to train: ``epochs * steps_per_epoch`` at most, fewer on small data.

    Each step draws ``batch_size`` values per field; beyond about ``settings.passes`` draws of
    every distinct value of the most varied field, more steps only cost time (the 160 default
    steps would show each of a 2,000-record set's values 20 times). At least ``MIN_STEPS``.
    """
    most = max((normalised[f].n_unique() for f in normalised.columns), default=0)
    wanted = int(np.ceil(settings.passes * most / settings.batch_size))
    return int(min(settings.epochs * settings.steps_per_epoch, max(MIN_STEPS, wanted)))


@dataclass(frozen=True)
class TrainingSample:
    """A uniform sample of candidate pairs and random records: what training sees on big inputs."""

    rows: np.ndarray  # row positions (sorted) of the records kept
    pairs: CandidatePairs  # sampled pairs, as positions into ``rows``
    pair_weight: float  # how many candidates each sampled pair stands for
    u_rows: np.ndarray  # positions into ``rows`` of the uniformly drawn records (for random pairs)
    random: tuple[np.ndarray, np.ndarray]  # random pairs of those records that are no candidates


def training_sample(
    pairs: CandidatePairs, n: int, max_pairs: int, random_records: int, rng: np.random.Generator
) -> TrainingSample | None:
    """Sample ``max_pairs`` candidates plus ``random_records`` records, or None if all fit.

    Training cost is then bounded by the sample, not by the input size; the combiner weights
    each sampled pair by ``len(pairs) / max_pairs`` so the match rate it learns is unchanged.
    The random pairs that stand for the non-candidates are drawn here, where every candidate is
    still known, so none of them is a candidate (a candidate would be counted twice).
    """
    if len(pairs) <= max_pairs:
        return None
    take = np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))
    drawn = np.sort(rng.choice(n, size=min(n, random_records), replace=False))
    rows = np.unique(np.concatenate([pairs.left[take], pairs.right[take], drawn]))
    position = np.searchsorted
    sampled = CandidatePairs(
        left=position(rows, pairs.left[take]),
        right=position(rows, pairs.right[take]),
        pass_index=pairs.pass_index[take],
        pass_names=pairs.pass_names,
        pass_counts=pairs.pass_counts,
    )
    a, b = random_non_candidates(drawn, random_records, pairs, rng)
    return TrainingSample(
        rows, sampled, len(pairs) / max_pairs, position(rows, drawn), (position(rows, a), position(rows, b))
    )


def random_non_candidates(
    rows: np.ndarray, count: int, exclude: CandidatePairs, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` random pairs of ``rows`` (row positions, left < right) that are not in ``exclude``."""
    a, b = rows[rng.integers(0, len(rows), size=count)], rows[rng.integers(0, len(rows), size=count)]
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    if len(exclude):
        width = int(max(b.max(initial=0), exclude.right.max(initial=0), exclude.left.max(initial=0))) + 1
        lo, hi = np.minimum(exclude.left, exclude.right), np.maximum(exclude.left, exclude.right)
        # a hash lookup (polars), not np.isin's sort of every candidate: 0.1 s, not 1.4 s, at 50k records
        keep &= ~pl.Series(a * width + b).is_in(pl.Series(lo * width + hi).implode()).to_numpy()
    return a[keep], b[keep]


def _labelled_pairs(pairs: CandidatePairs, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs whose both records carry a label, and whether the labels agree."""
    known = np.not_equal(labels, None)
    both = known[pairs.left] & known[pairs.right]
    left, right = pairs.left[both], pairs.right[both]
    same = labels[left] == labels[right]
    return left, right, np.asarray(same, dtype=bool)


def synthetic_duplicate_evidence(
    encoder: SiameseEncoder,
    normalised: pl.DataFrame,
    statistics: FieldStatistics,
    embeddings: FieldEmbeddings,
    rng: np.random.Generator,
    count: int,
    corrupt_share: float = 0.35,
) -> PairEvidence:
    """Evidence between sampled records and corrupted copies of them: the seed of m.

    About ``corrupt_share`` of the values are corrupted (``dedup.corrupt``); the rest stay equal
    and count as exact agreements on their own value. Text fields get their word-level
    similarity too, weighted by the data's own word counts.

    Only the corrupted copies go through the encoder: a sampled record's own embedding is read
    from ``embeddings`` (the records', by the same encoder; inference gives a value the same
    bits in any batch), and an unchanged or empty copy is exact or missing, whatever its cosine.
    Encoding every value and copy was a third of this function's time, at every fit.
    """
    rows = rng.integers(0, normalised.height, size=count)
    fields = list(encoder.fields)
    sims = np.empty((count, len(fields)), dtype=np.float32)
    tokens = np.full((count, len(fields)), np.nan, dtype=np.float32)
    exact = np.zeros((count, len(fields)), dtype=bool)
    long = np.zeros((count, len(fields)), dtype=bool)
    differ = np.zeros((count, len(fields)), dtype=bool)  # not read: the fit reads similarity alone
    frequency = np.full((count, len(fields)), np.nan, dtype=np.float32)
    with torch.inference_mode():
        for j, (field, kind) in enumerate(encoder.fields.items()):
            values = normalised[field].gather(rows)
            width = encoder.width(field)
            codes, lengths = to_codepoints(values, width)
            c2, l2 = corrupt_values(values, kind, rng, width)
            edit = rng.random(count) < corrupt_share
            c2 = np.where(edit[:, None], c2, codes)
            l2 = np.where(edit, l2, lengths)
            missing = (lengths == 0) | (l2 == 0)
            if kind is FieldKind.number:  # read as ``compare_pairs`` reads it: the numbers' closeness
                amounts = (read_numbers(v).fill_null(np.nan).to_numpy() for v in (values, _strings(c2, width)))
                column = number_closeness(*amounts)
            else:
                changed = edit & ~missing  # the rows whose cosine is not overwritten below
                column = np.empty(count, dtype=np.float32)
                if changed.any():
                    a = torch.from_numpy(embeddings.tables[field][embeddings.codes[field][rows[changed]]])
                    copies = tokenise(c2[changed], l2[changed], kind, encoder.buckets, trim=True)
                    column[changed] = (a * encoder(torch.from_numpy(copies), field)).sum(dim=1).numpy()
            same = ~edit & ~missing
            column[missing] = np.nan
            column[same] = 1.0
            sims[:, j], exact[:, j] = column, same
            ids = statistics.value_ids[field][rows]
            frequency[same, j] = statistics.frequency[field][ids[same]]
            if statistics.vocabulary and field in statistics.vocabulary:
                copies = _strings(c2, width)
                tokens[:, j] = value_pair_similarity(values, copies, statistics.vocabulary[field])
                tokens[missing, j] = np.nan
                counted = np.minimum(values.str.split(" ").list.len().fill_null(0).to_numpy(), count_words_of(copies))
                long[:, j] = counted >= LONG_TEXT_WORDS
    return PairEvidence(sims, tokens, exact, frequency, long, differ)


def _strings(codes: np.ndarray, width: int) -> pl.Series:
    """Codepoint rows (``to_codepoints``' layout) back to strings."""
    return pl.Series(np.ascontiguousarray(codes).view(f"<U{width}").ravel(), dtype=pl.String)


def count_words_of(values: pl.Series) -> np.ndarray:
    return values.str.split(" ").list.eval(pl.element().filter(pl.element() != "")).list.len().fill_null(0).to_numpy()
