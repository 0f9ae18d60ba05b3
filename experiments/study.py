"""melnas-study: the demo's matched-budget comparison over several seeds, with intervals."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.cli import HydraRun, run_hydra_app
from experiments.hydra_app import hydra_app
from experiments.study_steps import StudyResult, run_study


def study(cfg: DictConfig, run: HydraRun) -> StudyResult:
    result = run_study(cfg, run.out_dir)
    print()
    print(result.report.markdown)
    print(f"ran {len(result.ran)} step(s) in {result.seconds / 60:.1f} min; the others were done already")
    print(f"table: {result.report.markdown_path} ({result.report.csv_path.name}, {result.report.summary_path.name})")
    print(f"plot: {result.report.plot_path}")
    return result


@hydra_app("study")
def main(cfg: DictConfig) -> None:
    run_hydra_app("study", study, cfg, after_interrupt=lambda run: (
        f"run it again with hydra.run.dir={run.out_dir} and the same overrides: finished steps are skipped"))


if __name__ == "__main__":
    main()
