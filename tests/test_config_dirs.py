"""A user's own config folder (``MELNAS_CONFIG_PATH``, ``nas.io.config_dirs``): a search
space and a data format kept outside melnas's checkout reach the registries, the Hydra
apps and the console commands; a bad folder is a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nas.data.formats import DataFormat, available_formats
from nas.errors import MelnasError
from experiments.config_search_path import register_with_hydra
from nas.io.config_dirs import BUILTIN_CONF_DIR, CONFIG_PATH_ENV, check_builtin_conf_importable, user_config_dirs
from nas.io.registry import available_spaces, build_space, space_config, unmatched_experiment_space_files

REPO = Path(__file__).resolve().parents[1]
USER_SPACE = '''
from search_spaces.tiny_cnn import TinyCnnSpace


class WideCnnSpace(TinyCnnSpace):
    name = "wide_cnn"
'''


@pytest.fixture
def user_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project outside the checkout: its space module (importable from the project
    folder) and its config folder, named in MELNAS_CONFIG_PATH."""
    (tmp_path / "my_spaces").mkdir()
    (tmp_path / "my_spaces" / "__init__.py").write_text("")
    (tmp_path / "my_spaces" / "wide_cnn.py").write_text(USER_SPACE)
    conf = tmp_path / "my_conf"
    (conf / "search_space").mkdir(parents=True)
    (conf / "search_space" / "wide_cnn.yaml").write_text(
        "_target_: my_spaces.wide_cnn.WideCnnSpace\ndepth: 3\nchannels: 24\n")
    (conf / "experiment" / "search_space").mkdir(parents=True)
    (conf / "experiment" / "search_space" / "quick_wide_cnn.yaml").write_text(
        "# @package _global_\nreward:\n  target_ms: 0.042\n")
    (conf / "controller").mkdir()
    (conf / "controller" / "my_random.yaml").write_text((BUILTIN_CONF_DIR / "controller" / "random.yaml").read_text())
    (conf / "data" / "format").mkdir(parents=True)
    (conf / "data" / "format" / "my_folders.yaml").write_text("name: my_folders\nreader: nas.data.manifest.scan_folder\n")
    monkeypatch.setenv(CONFIG_PATH_ENV, str(conf))
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in [name for name in sys.modules if name.split(".")[0] == "my_spaces"]:
        monkeypatch.delitem(sys.modules, module)  # another test's project of the same name
    return tmp_path


def test_no_setting_means_no_user_folders():
    assert user_config_dirs({}) == []
    assert user_config_dirs({CONFIG_PATH_ENV: f" {os.pathsep}"}) == []


def test_the_registries_list_and_build_a_users_space_and_format(user_project):
    assert "wide_cnn" in available_spaces() and "mobilenetv3" in available_spaces()
    assert space_config("wide_cnn")["channels"] == 24
    space = build_space("wide_cnn")
    assert space.name == "wide_cnn" and space.depth == 3
    assert "my_folders" in available_formats() and "esc50" in available_formats()
    assert DataFormat.from_config("my_folders").reader == "nas.data.manifest.scan_folder"


def test_hydra_composes_a_users_space_with_its_own_quick_settings_and_controller(user_project):
    register_with_hydra()
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="search", overrides=["experiment=quick", "search_space=wide_cnn",
                                                       "controller=my_random"])
        builtin = compose(config_name="search", overrides=["experiment=quick", "search_space=tiny_cnn"])
    assert cfg.controller._target_ == "controllers.random_search.RandomController"  # controller/my_random.yaml
    assert cfg.search_space._target_ == "my_spaces.wide_cnn.WideCnnSpace" and cfg.search_space.depth == 3
    assert cfg.reward.target_ms == 0.042  # experiment/search_space/quick_wide_cnn.yaml of the user's folder
    assert builtin.reward.target_ms != 0.042


def test_a_missing_folder_and_a_hidden_builtin_are_errors_naming_the_file(tmp_path):
    with pytest.raises(MelnasError, match=f"{CONFIG_PATH_ENV} names .*nowhere, which is not a folder"):
        user_config_dirs({CONFIG_PATH_ENV: str(tmp_path / "nowhere")})
    (tmp_path / "search_space").mkdir()
    (tmp_path / "search_space" / "tiny_cnn.yaml").write_text("_target_: x.Y\n")
    with pytest.raises(MelnasError, match=r"tiny_cnn\.yaml has the name of melnas's own conf/search_space/tiny_cnn\.yaml"):
        user_config_dirs({CONFIG_PATH_ENV: str(tmp_path)})
    for folder in ("a", "b"):
        (tmp_path / folder / "search_space").mkdir(parents=True)
        (tmp_path / folder / "search_space" / "mine.yaml").write_text("_target_: x.Y\n")
    with pytest.raises(MelnasError, match=r"b/search_space/mine\.yaml and .*a/search_space/mine\.yaml have one name"):
        user_config_dirs({CONFIG_PATH_ENV: f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"})


def test_a_space_module_that_cannot_be_imported_says_how_to_make_it_importable():
    with pytest.raises(MelnasError, match=r"cannot import no_such_project\.Space .*PYTHONPATH"):
        build_space({"_target_": "no_such_project.Space"})


def _arch_command(project: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.arch", "--space", "wide_cnn", "--random", "1"],
                          cwd=project, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{project}", **env})


def test_a_console_command_takes_a_users_space_and_refuses_a_bad_folder_in_one_line(user_project):
    result = _arch_command(user_project)
    assert result.returncode == 0, result.stderr
    assert "total (whole model)" in result.stdout
    bad = _arch_command(user_project, **{CONFIG_PATH_ENV: str(user_project / "nowhere")})
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"melnas: {CONFIG_PATH_ENV} names {user_project / 'nowhere'}, which is not a folder; give folders laid "
        "out like melnas's conf/ (e.g. <folder>/search_space/<name>.yaml)"]


def test_a_misnamed_experiment_file_for_a_space_is_reported(user_project):
    folder = user_project / "my_conf" / "experiment" / "search_space"
    (folder / "quick_widecnn.yaml").write_text("# @package _global_\n")
    assert unmatched_experiment_space_files("quick") == [folder / "quick_widecnn.yaml"]
    assert unmatched_experiment_space_files(None) == []
    (folder / "quick_widecnn.yaml").unlink()
    assert unmatched_experiment_space_files("quick") == []  # quick_wide_cnn and the built-in ones all match


def test_a_space_whose_own_import_is_missing_names_that_package(user_project):
    (user_project / "my_spaces" / "needs_more.py").write_text("import no_such_dependency\n")
    with pytest.raises(MelnasError, match=r"my_spaces\.needs_more\.Space needs 'no_such_dependency', which is not installed"):
        build_space({"_target_": "my_spaces.needs_more.Space"})


def test_a_conf_folder_on_the_path_that_hides_melnas_configs_is_named(tmp_path):
    """A user project's own conf/ on PYTHONPATH shadows melnas's config package (installed
    melnas, as a user runs it: the checkout itself is not on the path)."""
    (tmp_path / "conf" / "search_space").mkdir(parents=True)
    (tmp_path / "conf" / "__init__.py").write_text("")  # a package: it hides melnas's however melnas is installed
    result = subprocess.run([sys.executable, "-m", "experiments.arch", "--space", "tiny_cnn", "--random", "1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert f"the folder {tmp_path.resolve() / 'conf'} hides melnas's config package 'conf'" in result.stderr
    check_builtin_conf_importable()  # in this process, melnas's own


def test_a_misspelt_space_class_names_the_module_and_its_spaces(user_project):
    with pytest.raises(MelnasError, match=r"my_spaces\.wide_cnn has no 'WideCNNSpace'; its search spaces: WideCnnSpace$"):
        build_space({"_target_": "my_spaces.wide_cnn.WideCNNSpace"})


def test_an_experiment_file_without_its_package_line_says_so(user_project):
    from experiments.search import NOT_SETTINGS
    from experiments.settings import settings_from
    from nas.search.loop import SearchSettings

    quick = user_project / "my_conf" / "experiment" / "search_space" / "quick_wide_cnn.yaml"
    quick.write_text("reward:\n  target_ms: 0.042\n")  # the '# @package _global_' line forgotten
    register_with_hydra()
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="search", overrides=["experiment=quick", "search_space=wide_cnn"])
    with pytest.raises(MelnasError, match=r"unknown setting\(s\) experiment \(an experiment/\*\.yaml file puts its "
                                          r"keys under experiment: unless its first line is '# @package _global_'\)"):
        settings_from(cfg, SearchSettings, skip=NOT_SETTINGS)


def test_a_target_without_a_module_keeps_hydras_own_error():
    with pytest.raises(MelnasError, match=r"cannot build NoDots"):
        build_space({"_target_": "NoDots"})
