"""melnas-rank (nas/search/rank/): the rank statistics, the deterministic latency-stratified
draw, the standalone cache, and (slow) the whole command on a tiny generated set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from nas.search.rank import standalone
from nas.search.rank.draw import archs_to_rank, spread_pool, stratified_archs, van_der_corput
from nas.search.rank.standalone import StandaloneJob, entry_key, entry_path, train_missing
from nas.search.rank.stats import kendall_tau, rank_of_top1, spearman_rho, top_k_overlap
from nas.train.augment import AugmentSettings
from nas.train.job import TrainSettings
from search_spaces.enas_macro import EnasMacroSpace
from search_spaces.mobilenetv3 import MobileNetV3Space

SPACE = MobileNetV3Space(width=0.5, kernels=[3, 5], expand_ratios=[3, 6])


# ---- statistics -----------------------------------------------------------------------


def test_kendall_and_spearman_on_known_orders():
    a = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert kendall_tau(a, [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert kendall_tau(a, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swapped adjacent pair of 5: (10 - 2 * 1) / 10 concordant minus discordant
    assert kendall_tau(a, [1, 2, 4, 3, 5]) == pytest.approx(0.8)
    # rho = 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 12 / 120
    assert spearman_rho(a, [1, 2, 4, 3, 5]) == pytest.approx(0.9)
    rng = np.random.default_rng(0)
    x, y = rng.random(12), rng.random(12)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_constant_scores_give_nan_and_short_lists_are_rejected():
    assert np.isnan(kendall_tau([0.5, 0.5, 0.5], [1, 2, 3]))
    with pytest.raises(ValueError, match="two paired lists"):
        spearman_rho([1.0], [1.0])
    with pytest.raises(ValueError, match="two paired lists"):
        kendall_tau([1.0, 2.0], [1.0, 2.0, 3.0])


def test_rank_of_the_supernet_top1_and_top_k_overlap():
    predicted = [0.9, 0.1, 0.5, 0.7, 0.3, 0.2]
    actual = [0.6, 0.9, 0.8, 0.1, 0.2, 0.3]
    assert rank_of_top1(predicted, actual) == 3  # 0.9 and 0.8 are better standalone
    assert top_k_overlap(predicted, actual, 3) == 2  # {0, 3, 2} vs {1, 2, 0}
    assert top_k_overlap(predicted, predicted, 5) == 5
    assert top_k_overlap(predicted, actual, 10) == 6  # k capped at the number of archs


def test_the_search_top_placement_sets_its_picks_against_their_standalone_ranks():
    from nas.search.rank.report import search_top_placement

    origins = ["top", "top", "stratified", "stratified", "stratified", "stratified"]
    predicted = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # the search's two picks scored highest...
    actual = [0.5, 0.6, 0.9, 0.8, 0.7, 0.4]  # ...and 5th and 4th standalone; the others in the supernet's order
    latency = [0.2, 0.2, 0.1, 0.2, 0.3, 0.4]  # the spread archs: slower is worse standalone here
    placement = search_top_placement(origins, predicted, actual, latency)
    assert placement == {"count": 2, "of": 6, "supernet_mean_rank": 1.5, "standalone_mean_rank": 4.5,
                         "spread_kendall_tau": pytest.approx(1.0), "spread_latency_kendall_tau": pytest.approx(-1.0)}
    assert search_top_placement(["stratified"] * 3, [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [1, 2, 3]) is None
    few = search_top_placement(["top", "top", "stratified"], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [1, 2, 3])
    assert np.isnan(few["spread_kendall_tau"]) and np.isnan(few["spread_latency_kendall_tau"])  # one spread arch


# ---- the draw -------------------------------------------------------------------------


def cost(arch) -> float:
    """A deterministic stand-in for predicted latency: larger kernels and ratios cost more."""
    values = arch.as_dict()
    return sum(float(v) for k, v in values.items() if k.endswith(("_kernel", "_expand"))) \
        - 5.0 * sum(1 for k, v in values.items() if k.endswith("_skip") and v)


def test_stratified_draw_is_deterministic_nested_and_spans_the_latency_range():
    a = stratified_archs(SPACE, cost, 8, seed=3, pool=200)
    b = stratified_archs(SPACE, cost, 8, seed=3, pool=200)
    assert [x.hash for x in a] == [x.hash for x in b]
    assert len({x.hash for x in a}) == 8
    assert [x.hash for x in stratified_archs(SPACE, cost, 8, seed=4, pool=200)] != [x.hash for x in a]
    # more archs extend fewer: a second rank call keeps the first call's archs
    assert [x.hash for x in stratified_archs(SPACE, cost, 5, seed=3, pool=200)] == [x.hash for x in a[:5]]
    low, high = cost(SPACE.extreme_arch(largest=False)), cost(SPACE.extreme_arch(largest=True))
    costs = [cost(x) for x in a]
    assert costs[0] == pytest.approx((low + high) / 2, abs=0.05 * (high - low))  # the first: mid-range
    # evenly over the space's whole range, beyond where uniform archs reach
    rng = np.random.default_rng(3)
    uniform = [cost(SPACE.random_arch(rng)) for _ in range(200)]
    assert min(costs) < min(uniform) and max(costs) > max(uniform)
    assert min(costs) <= low + 0.15 * (high - low) and max(costs) >= high - 0.15 * (high - low)


def test_spread_pool_reaches_both_extreme_archs_and_stays_uniform_without_an_order():
    pool = spread_pool(SPACE, 400, np.random.default_rng(0))
    hashes = {a.hash for a in pool}
    assert SPACE.extreme_arch(largest=False).hash in hashes and SPACE.extreme_arch(largest=True).hash in hashes
    unordered = EnasMacroSpace(num_layers=4)  # its op choice has no smaller-to-larger order
    rng = np.random.default_rng(1)
    assert [a.hash for a in spread_pool(unordered, 20, np.random.default_rng(1))] == \
        [unordered.random_arch(rng).hash for _ in range(20)]


def test_van_der_corput_halves_the_gaps():
    assert [van_der_corput(n) for n in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]


def test_archs_to_rank_puts_the_search_top_first_and_fills_with_the_draw():
    top = [SPACE.random_arch(np.random.default_rng(9)).to_json_dict() for _ in range(1)]
    top.append(stratified_archs(SPACE, cost, 6, seed=0)[2].to_json_dict())  # also drawn
    chosen = archs_to_rank(SPACE, cost, num_archs=8, top=top, top_archs=2, seed=0)
    assert [origin for _, origin in chosen[:2]] == ["top", "top"]
    assert [a.to_json_dict() for a, _ in chosen[:2]] == top
    assert len(chosen) == 8  # the duplicate is kept once, as a top arch, and the next drawn arch fills its place
    assert [a.hash for a, o in chosen if o == "stratified"] == \
        [a.hash for a in stratified_archs(SPACE, cost, 7, seed=0) if a.hash != SPACE.arch_from_json_dict(top[1]).hash]
    with pytest.raises(ValueError, match="rank.top_archs=5 .* lower rank.top_archs"):
        archs_to_rank(SPACE, cost, num_archs=4, top=top, top_archs=5, seed=0)
    with pytest.raises(ValueError, match="rank.num_archs=1"):
        archs_to_rank(SPACE, cost, num_archs=1, top=top, top_archs=0, seed=0)
    smallest = SPACE.extreme_arch(largest=False)  # its layer 2 is skipped: another kernel there is the same network
    twin = SPACE.arch({**smallest.as_dict(), "l2_kernel": 5})
    chosen = archs_to_rank(SPACE, cost, num_archs=4, top=[smallest.to_json_dict(), twin.to_json_dict()], top_archs=2, seed=0)
    assert [origin for _, origin in chosen].count("top") == 1 and len(chosen) == 4


# ---- the standalone cache -------------------------------------------------------------


def jobs_for(archs, cache: Path, train: TrainSettings, network: str = "net") -> list[StandaloneJob]:
    key = entry_key(train=train, space_config=SPACE.config, data_id="data", seed=0)
    return [StandaloneJob(a.to_json_dict(), SPACE.config, "unused", train, None, 0, "cpu", 1,
                          str(entry_path(cache, a.hash, key)), network) for a in archs]


def test_seed_agreement_is_the_mean_pairwise_tau_of_the_training_seeds():
    from nas.search.rank.report import seed_agreement

    assert seed_agreement([[0.1, 0.2, 0.3]]) is None
    assert seed_agreement([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7]]) == pytest.approx(1.0)
    assert seed_agreement([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.7, 0.6, 0.5]]) == pytest.approx((1 - 1 - 1) / 3)


def test_attainable_tau_matches_a_simulated_perfect_ranker():
    # 20 archs whose expected accuracies are known (the perfect ranker's scores), trained
    # with independent noise per seed; the estimate from the seeds' agreement must match
    # the tau the perfect ranker actually reaches against the seeds' mean. Sample Kendall
    # tau is unbiased, so only Monte Carlo error separates the two: its std over 3000
    # trials is about 0.003, the tolerance 0.02.
    from nas.search.rank.report import attainable_tau, seed_agreement

    rng = np.random.Generator(np.random.PCG64(0))
    for num_seeds, noise in ((2, 1.2), (3, 1.2), (2, 0.5)):
        seed_taus, perfect_taus = [], []
        for _ in range(3000):
            expected = rng.normal(size=20)
            seeds = expected + rng.normal(scale=noise, size=(num_seeds, 20))
            seed_taus.append(seed_agreement(seeds.tolist()))
            perfect_taus.append(kendall_tau(expected, seeds.mean(axis=0)))
        assert attainable_tau(float(np.mean(seed_taus)), num_seeds) == pytest.approx(np.mean(perfect_taus), abs=0.02)
    assert attainable_tau(None, 1) is None and attainable_tau(float("nan"), 2) is None
    assert attainable_tau(-0.2, 2) == 0.0 and attainable_tau(1.0, 2) == pytest.approx(1.0)


def test_cache_trains_only_new_archs_and_not_across_recipes(tmp_path, monkeypatch):
    trained: list[str] = []

    def fake_train(job: StandaloneJob) -> dict:
        trained.append(job.arch_json["choices"]["l0_kernel"])
        entry = {"hash": Path(job.entry).name, "val_accuracy": 0.5, "test_accuracy": 0.5, "network": job.network}
        Path(job.entry).write_text(json.dumps(entry))
        return entry

    monkeypatch.setattr(standalone, "train_standalone", fake_train)
    archs = stratified_archs(SPACE, cost, 5, seed=0)
    recipe = TrainSettings(epochs=2, spec_augment=AugmentSettings(enabled=False))
    assert len(train_missing(jobs_for(archs[:3], tmp_path, recipe), processes=1)) == 3
    assert len(trained) == 3
    results = train_missing(jobs_for(archs, tmp_path, recipe), processes=1)  # two more archs
    assert len(trained) == 5 and len(results) == 5
    train_missing(jobs_for(archs, tmp_path, TrainSettings(epochs=3, spec_augment=AugmentSettings(enabled=False))),
                  processes=1)
    assert len(trained) == 10  # a changed recipe trains every arch again
    train_missing(jobs_for(archs[:2], tmp_path, recipe, network="edited"), processes=1)
    assert len(trained) == 12  # the space's code changed the networks: their entries are stale
    legacy = Path(jobs_for(archs[2:3], tmp_path, recipe)[0].entry)
    legacy.write_text(json.dumps({"val_accuracy": 0.5, "test_accuracy": 0.5}))  # written before entries named networks
    train_missing(jobs_for(archs[2:3], tmp_path, recipe, network="edited"), processes=1)
    assert len(trained) == 12
    other_data = entry_key(train=recipe, space_config=SPACE.config, data_id="other", seed=0)
    assert other_data != entry_key(train=recipe, space_config=SPACE.config, data_id="data", seed=0)


# ---- melnas-rank end to end -----------------------------------------------------------


@pytest.mark.slow
def test_melnas_rank_on_a_tiny_search(tmp_path):
    """A tiny search, then melnas-rank twice: the second call with more archs trains only
    the new ones and reuses the first call's trainings."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.cli import HydraRun
    from experiments.rank import rank as rank_app
    from nas.data.prepare import prepare_dataset
    from nas.errors import MelnasError
    from tests.test_search import CONF, search, tiny_overrides, write_tiny_audio

    write_tiny_audio(tmp_path / "audio")
    run_dir = tmp_path / "search"
    assert search(tmp_path, run_dir).finished
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="search", overrides=tiny_overrides(tmp_path))
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra saves for melnas-search

    def rank(num_archs: int, out: str, *extra: str) -> dict:
        overrides = ["rank.train_seeds=[0]", *extra, f"run={run_dir}", f"rank.num_archs={num_archs}", "rank.top_archs=2", "rank.pool=50",
                     "rank.recalibration_batches=1", "rank.threads=1", f"rank.cache_dir={tmp_path / 'cache'}",
                     "train.epochs=1", "train.batch_size=8", "train.eval_batch_size=8", "device=cpu"]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            job = compose(config_name="rank", overrides=overrides)
        return rank_app(job, HydraRun(tmp_path / out))

    first = rank(4, "rank1")
    for name in ("rank.csv", "rank.json", "rank.png"):
        assert (tmp_path / "rank1" / name).stat().st_size > 0
    assert first["num_archs"] == 4 and first["standalone"]["trained_now"] == 4
    assert set(first["by_bn_mode"]) == {"recalibrate", "batch", "running"}
    tau = first["kendall_tau"]
    assert (np.isnan(tau) or -1.0 <= tau <= 1.0) and 1 <= first["top1_standalone_rank"] <= 4
    written = json.loads((tmp_path / "rank1" / "rank.json").read_text())
    assert written["kendall_tau"] == (None if np.isnan(tau) else tau)
    rows = (tmp_path / "rank1" / "rank.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("hash,arch_str,origin,latency_ms,supernet_recalibrate")
    table = list(csv.DictReader(rows))  # the baseline ranks by predicted latency alone
    assert first["latency_baseline"]["kendall_tau"] == pytest.approx(kendall_tau(
        [float(r["latency_ms"]) for r in table], [float(r["standalone_val"]) for r in table]), nan_ok=True)
    assert first["standalone_val_test_tau"] == pytest.approx(kendall_tau(  # the split's own noise
        [float(r["standalone_val"]) for r in table], [float(r["standalone_test"]) for r in table]), nan_ok=True)
    assert first["search_top"]["count"] == sum(r["origin"] == "top" for r in table) == 2
    second = rank(6, "rank2")
    assert second["num_archs"] == 6
    assert second["standalone"] | {"trained_now": 2, "reused": 4} == second["standalone"]
    assert first["standalone_seed_tau"] is None  # one training seed: no seed agreement to give
    third = rank(6, "rank3", "rank.train_seeds=[0,1]")  # a second seed: 6 new trainings, 6 reused
    assert third["standalone"] | {"trained_now": 6, "reused": 6} == third["standalone"]
    seed_tau, attainable = third["standalone_seed_tau"], third["attainable_tau"]
    assert np.isnan(seed_tau) or -1.0 <= seed_tau <= 1.0  # NaN: a tiny recipe can give constant accuracies
    assert attainable is None if np.isnan(seed_tau) else 0.0 <= attainable <= 1.0
    header = (tmp_path / "rank3" / "rank.csv").read_text().splitlines()[0]
    assert header.endswith("standalone_val,standalone_test,standalone_val_seed0,standalone_val_seed1")
    assert third["referees"] is None
    # the third check's standalone.json as the truth: its archs and accuracies, nothing trained
    again = rank(2, "rank3t", f"rank.truths={tmp_path / 'rank3'}")
    assert again["standalone"]["trained_now"] == 0 and again["num_archs"] == 6 and again["search_top"] is None
    columns = ("hash", "origin", "standalone_val", "standalone_test", "standalone_val_seed0", "standalone_val_seed1")
    assert ([[row[c] for c in columns] for row in csv.DictReader(open(tmp_path / "rank3t" / "rank.csv"))]
            == [[row[c] for c in columns] for row in csv.DictReader(open(tmp_path / "rank3" / "rank.csv"))])
    assert again["kendall_tau"] == pytest.approx(third["kendall_tau"], nan_ok=True)
    refit = rank(6, "rank3r", "rank.refit_examples=20")  # each arch's output layer refitted: scoring only
    assert refit["standalone"]["trained_now"] == 0 and refit["rank"]["refit_examples"] == 20
    # another seed's search as the referee: each arch's ensemble score is the mean of the
    # run's own score and the referee's, and the referee disagrees with the run somewhere
    other = tmp_path / "search_seed1"
    assert search(tmp_path, other, "seed=1").finished
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        other_cfg = compose(config_name="search", overrides=tiny_overrides(tmp_path, "seed=1"))
    (other / ".hydra").mkdir()
    OmegaConf.save(other_cfg, other / ".hydra" / "config.yaml")
    refereed = rank(6, "rank4", f"rank.referees=[{other}]")
    assert refereed["standalone"]["trained_now"] == 0
    assert refereed["referees"]["runs"] == [str(other)]
    table = list(csv.DictReader((tmp_path / "rank4" / "rank.csv").read_text().splitlines()))
    own, ref, both = ([float(row[key]) for row in table]
                      for key in ("supernet_recalibrate", "supernet_referees", "supernet_ensemble"))
    assert both == pytest.approx([(a + b) / 2 for a, b in zip(own, ref)], abs=1e-9)
    assert own != ref
    assert refereed["referees"]["kendall_tau"] == pytest.approx(
        kendall_tau(both, [float(row["standalone_val"]) for row in table]), nan_ok=True)
    # by default melnas-rank scores with the referees the search picked with
    summary_path = run_dir / "search_summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "final_referees": [str(other)]}))
    assert rank(6, "rank4b")["referees"]["runs"] == [str(other)]
    assert rank(6, "rank4c", "rank.referees=[]")["referees"] is None
    summary_path.write_text(json.dumps(summary))
    # the cache prepared again with other splits: the run's supernet trained on some of
    # today's val recordings, so it is refused before anything is scored or trained
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        resplit = compose(config_name="search", overrides=tiny_overrides(tmp_path, "data.seed=1"))
    prepare_dataset(OmegaConf.to_container(resplit.data, resolve=True), progress=False)
    with pytest.raises(MelnasError, match=r"run: .*search trained on other splits than .*cache holds now"):
        rank(6, "rank5")
    assert not (tmp_path / "rank5" / "rank.json").exists()


def test_a_referee_of_another_space_or_data_or_without_a_supernet_is_refused(tmp_path):
    from nas.errors import MelnasError
    from nas.io.checkpoint import save_checkpoint
    from nas.search.few_shot import FewShotSettings
    from nas.search.referees import Referee, check_referees

    def referee(name: str, width: float, cache: str, split_identity: str | None = "abc") -> Referee:
        # a checkpoint of a search of data "abc"; one without a data identity predates it
        save_checkpoint(tmp_path / name / "checkpoints" / "last.pt",
                        {} if split_identity is None else {"split_identity": split_identity})
        (tmp_path / name / "top_archs.json").write_text("[]")
        return Referee(run_dir=tmp_path / name, data_cache_dir=cache,
                       space_config={"name": "mobilenetv3", "width": width}, few_shot=FewShotSettings())

    def check(*referees: Referee) -> None:
        check_referees(referees, space_config={"name": "mobilenetv3", "width": 0.5}, data_cache_dir="data/cache/a",
                       split_identity="abc", setting="rank.referees", run_dir=tmp_path / "ranked")

    check(referee("twin", 0.5, "data/cache/a"))
    with pytest.raises(MelnasError, match=r"rank.referees: .*wide searched with another search_space \(width: 1.0 there, 0.5 here\)"):
        check(referee("twin", 0.5, "data/cache/a"), referee("wide", 1.0, "data/cache/a"))
    with pytest.raises(MelnasError, match=r"rank.referees: .*other searched with data.cache_dir data/cache/b"):
        check(referee("other", 0.5, "data/cache/b"))
    check(referee("same_cache_other_spelling", 0.5, "data/cache/../cache/a"))
    with pytest.raises(MelnasError, match=r"rank.referees: .*ranked is the run itself: its supernet would count twice"):
        check(referee("ranked", 0.5, "data/cache/a"))
    with pytest.raises(MelnasError, match=r"rank.referees: .*twin is listed twice"):
        check(referee("twin", 0.5, "data/cache/a"), referee("twin", 0.5, "data/cache/a"))
    with pytest.raises(MelnasError, match=r"rank.referees: .*resplit trained on other splits than data/cache/a holds "
                                          r"now: .*run its search again on this data"):
        check(referee("resplit", 0.5, "data/cache/a", split_identity="def"))
    check(referee("older_melnas", 0.5, "data/cache/a", split_identity=None))
    unfinished = referee("unfinished", 0.5, "data/cache/a")
    (unfinished.run_dir / "top_archs.json").unlink()
    with pytest.raises(MelnasError, match=r"rank.referees: .*unfinished/top_archs.json is missing: .*resume=true"):
        check(unfinished)
    (unfinished.run_dir / "checkpoints" / "last.pt").unlink()
    with pytest.raises(MelnasError, match=r"rank.referees: .*unfinished/checkpoints/last.pt is missing"):
        check(unfinished)


def test_a_recipe_reading_data_settings_takes_the_searchs(tmp_path, monkeypatch):
    # train=quick reads ${data.batch_size}; melnas-rank has no data group of its own
    import experiments.rank as rank_app
    from experiments.cli import HydraRun
    from hydra import compose, initialize_config_dir

    from nas.io.config_dirs import BUILTIN_CONF_DIR

    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        search_cfg = compose(config_name="search", overrides=[f"data.root={tmp_path}/audio", "data.batch_size=32"])
        job_cfg = compose(config_name="rank", overrides=[f"run={tmp_path}", "train=quick"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(search_cfg, tmp_path / ".hydra" / "config.yaml")
    monkeypatch.setattr(rank_app, "run_rank", lambda job, search, **_: job)
    job = rank_app.rank(job_cfg, HydraRun(tmp_path / "out"))
    assert job.train.batch_size == 32 and job.train.epochs == 24


def test_a_search_from_before_latency_runtimes_is_ranked_with_its_eager_table(tmp_path):
    from experiments.rank import search_run
    from hydra import compose, initialize_config_dir

    from nas.io.config_dirs import BUILTIN_CONF_DIR

    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="search", overrides=[f"data.root={tmp_path}/audio"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    assert search_run(tmp_path).settings.latency_table.runtime == "auto"
    saved = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    del saved.latency_table["runtime"]
    OmegaConf.save(saved, tmp_path / ".hydra" / "config.yaml")
    assert search_run(tmp_path).settings.latency_table.runtime == "torch"


def test_the_report_line_explains_nan_only_when_there_is_one(capsys):
    from experiments.rank import report

    def summary(tau: float, num_archs: int) -> dict:
        figures = {"kendall_tau": tau, "spearman_rho": tau, "top1_standalone_rank": 1, "top5_overlap": min(3, num_archs)}
        return {"num_archs": num_archs, "bn_mode": "recalibrate", **figures, "by_bn_mode": {"recalibrate": figures},
                "latency_baseline": figures, "standalone_seed_tau": None, "attainable_tau": None,
                "standalone_val_test_tau": 0.5, "referees": None, "standalone": {"seeds": [0, 1]},
                "search_top": {"count": 5, "of": num_archs, "supernet_mean_rank": 3.0, "standalone_mean_rank": 9.4,
                               "spread_kendall_tau": 0.3 if num_archs > 6 else float("nan"),
                               "spread_latency_kendall_tau": 0.41}}

    report(summary(0.4, 20), Path("out"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("top-5 overlap 3/5") and not any("nan" in line for line in lines)
    assert ("  the search's own top 5: mean rank 3.0 of 20 by the supernet, 9.4 standalone (much later standalone: "
            "the supernet overrated what its search picked)") in lines
    assert "  the other 15 archs alone: tau 0.300, predicted latency as the score 0.410" in lines
    report(summary(float("nan"), 3), Path("out"))
    printed = capsys.readouterr().out
    assert "archs alone" not in printed  # no spread archs to order: no tau line
    first, second = printed.splitlines()[:2]
    assert first.endswith("top-5 overlap 3/3")
    assert second.startswith("  nan: one of the two orders is constant (rank.csv)") and "train.batch_size" in second
    refereed = summary(0.4, 20) | {"referees": {"runs": ["a", "b"], "kendall_tau": 0.55, "spearman_rho": 0.7,
                                                "top1_standalone_rank": 2, "referees_alone": {"kendall_tau": 0.5}}}
    report(refereed, Path("out"))
    assert ("with 2 referee supernet(s), the mean score: tau 0.550 rho 0.700, top-1 is standalone #2; "
            "the referees alone: tau 0.500") in capsys.readouterr().out
    report(summary(0.4, 20) | {"standalone": {"seeds": [0, 1], "truths": "ref/standalone.json"}}, Path("out"))
    assert ("  standalone results read from ref/standalone.json (rank.truths: nothing trained)"
            in capsys.readouterr().out.splitlines())


def test_network_digest_follows_the_network_not_the_arch_hash():
    from torch import nn

    from nas.search.rank.standalone import network_digest

    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    assert network_digest(plain) == network_digest(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    assert network_digest(plain) != network_digest(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
