from pathlib import Path

import pytest

from agecurriculum.config import RunConfig, apply_overrides, load_config


def test_yaml_and_toml_give_the_same_config(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "out_dir: runs/x\nschedule: list1\ndata:\n  root: /data\n  image_size: 128\n"
        "trainer:\n  lr: 3e-4\n  batch_size: 16\n"
    )
    (tmp_path / "run.toml").write_text(
        'out_dir = "runs/x"\nschedule = "list1"\n[data]\nroot = "/data"\nimage_size = 128\n'
        "[trainer]\nlr = 3e-4\nbatch_size = 16\n"
    )
    from_yaml, from_toml = load_config(tmp_path / "run.yaml"), load_config(tmp_path / "run.toml")
    assert from_yaml == from_toml
    assert from_yaml.trainer.lr == 3e-4 and isinstance(from_yaml.trainer.lr, float)
    assert from_yaml.data.image_size == 128 and from_yaml.model.backbone == "efficientnet-lite0"


def test_overrides_apply_in_order_and_parse_values():
    config = apply_overrides(
        RunConfig(),
        [
            "trainer.lr=1e-2",
            "data.max_images=200",
            "bins=[2, 6, 14, 23, 34, 45, 59]",
            "trainer.early_stopping_patience=null",
            "trainer.lr=0.5",
        ],
    )
    assert config.trainer.lr == 0.5
    assert config.data.max_images == 200
    assert config.bins == [2, 6, 14, 23, 34, 45, 59]
    assert config.trainer.early_stopping_patience is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.lrate=1", "unknown setting 'lrate'"),
        ("trainer=3", "trainer is a section"),
        ("trainer.lr.x=3", "lr is a value, not a section"),
        ("trainer.batch_size=2.5", "expected a int, got 2.5"),
        ("model.pretrained=yes please", "expected a bool"),
        ("no-equals-sign", "expected section.field=value"),
    ],
)
def test_bad_overrides_name_the_setting(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(RunConfig(), [override])


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown config format"):
        load_config(tmp_path / "x.json")
    (tmp_path / "typo.yaml").write_text("dat:\n  root: x\n")
    with pytest.raises(ValueError, match=r"typo.yaml: dat: unknown setting 'dat'"):
        load_config(tmp_path / "typo.yaml")
    with pytest.raises(ValueError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_every_setting_is_documented_in_help(capsys):
    import dataclasses

    from agecurriculum.cli.main import main
    from agecurriculum.config import RunConfig, settings_help

    def leaves(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            yield from leaves(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]

    lines = settings_help()
    names = [line.split(" = ")[0] for line in lines]
    assert names == list(leaves(RunConfig()))
    assert all(": " in line and line.split(": ", 1)[1].strip() for line in lines), lines
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert all(f"  {line}" in out for line in lines)


EXAMPLE_CONFIGS = Path(__file__).parents[1] / "examples" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLE_CONFIGS.glob("*.yaml")))
def test_example_configs_load_and_their_schedules_are_valid(name):
    import warnings

    from agecurriculum.data.datasets import MIXED
    from agecurriculum.train.run import build_schedule

    config = load_config(EXAMPLE_CONFIGS / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper's original curriculum breaks nested-bins on purpose, and warns
        schedule = build_schedule(config, 8)
    assert set(schedule.datasets) <= {*config.data.datasets, MIXED}  # "mixed": all of them shuffled together
