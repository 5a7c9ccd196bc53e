"""The run-configuration schema (bench.config): every key type-checked and range-checked before any work."""

import pandas as pd
import pytest

from bench.config import MAX_SEED, RunConfig, check_device_available, check_filters, run_config_from
from bench.errors import BenchError, UnknownNameError, UsageError


def from_file(**values):
    return run_config_from(values, {}, source="config 'run.toml'")


def test_defaults_and_merging():
    config = run_config_from({"methods": ["tv"], "limit": 2, "params": {"noise": {"sigma": [15, 50]}}},
                             {"limit": 1, "seeds": "0,3"}, sets={"noise": {"sigma": "25"}, "tv": {"weight": "1"}})
    assert config.methods == ["tv"] and config.degradations == ["noise", "jpeg", "multi"]
    assert config.limit == 1 and config.seeds == [0, 3]  # the command line wins
    assert config.overrides == {"noise": {"sigma": "25"}, "tv": {"weight": "1"}}
    assert config.device == "cpu" and config.lpips
    assert run_config_from({"no_lpips": True, "gpus_per_cell": 1}, {}).lpips is False
    assert run_config_from({"gpus_per_cell": 1}, {}).device == "cuda"  # a Dask GPU run; checked on the workers


def test_a_string_for_a_list_key_is_split_on_commas():
    """`methods = "tv"` used to become the method "t"; a string is the command-line syntax, documented."""
    assert from_file(methods="tv").methods == ["tv"]
    assert from_file(methods="tv, dip", seeds="0,1").methods == ["tv", "dip"]
    assert from_file(seeds="0,1").seeds == [0, 1]


@pytest.mark.parametrize("values, message", [
    ({"seeds": [0, "a"]}, "config 'run.toml': seeds[1]: expected an integer, got the string 'a'."),
    ({"seeds": [0, 1.5]}, "seeds[1]: expected an integer, got the number 1.5."),
    ({"seeds": [True]}, "seeds[0]: expected an integer, got the boolean True."),
    ({"seeds": [2**63]}, f"seeds {2**63}: must be at most {MAX_SEED} (2**63 - 1"),
    ({"seeds": [-1]}, "seeds -1: must be at least 0."),
    ({"seeds": [1, 1]}, "seeds: 1 is given twice"),
    ({"seeds": []}, "seeds: must not be empty."),
    ({"methods": 3}, "methods: expected a list, got the integer 3."),
    ({"methods": ["tv", 2]}, "methods[1]: expected a string, got the integer 2."),
    ({"methods": []}, "methods: must not be empty."),
    ({"limit": "3"}, "limit: expected an integer, got the string '3'."),
    ({"limit": 0}, "limit 0: must be at least 1 (leave it out to use every image)."),
    ({"limit": -1}, "limit -1: must be at least 1"),
    ({"crop": 0}, "crop 0: must be at least 16 (images must be at least 16×16 px)."),
    ({"crop": 8.5}, "crop: expected an integer, got the number 8.5."),
    ({"profile": "smok"}, "profile 'smok': choose one of smoke, quick, paper. Did you mean 'smoke'?"),
    ({"executor": "slurm"}, "executor 'slurm': choose one of local, dask."),
    ({"jobs": 0}, "jobs 0: must be at least 1."),
    ({"gpus_per_cell": -1}, "gpus_per_cell -1.0: must be at least 0."),
    ({"gpus_per_cell": float("inf")}, "gpus_per_cell: expected a finite number, got inf."),
    ({"no_lpips": "yes"}, "no_lpips: expected true or false, got the string 'yes'."),
    ({"device": "foo"}, "--device 'foo': not a device; use cpu, cuda, cuda:N (an index), mps or xpu."),
    ({"device": "meta"}, "--device 'meta': not a device"),
    ({"params": 3}, "params: expected a table, got the integer 3."),
    ({"params": {"noise": 3}}, "params.noise: expected a table, got the integer 3."),
    ({"params": {"noise": {"sigma": []}}}, "noise.sigma (--set or [params]): an empty list of values"),
    ({"scheduler": "tcp://x:8786"}, "--scheduler needs --executor dask."),
    ({"limt": 3}, "config 'run.toml': unknown key 'limt'. Did you mean 'limit'? Keys: methods, degradations,"),
    ({"seed": [0]}, "unknown key 'seed'. Did you mean 'seeds'?"),
])
def test_bad_values_are_usage_errors_naming_the_key(values, message):
    with pytest.raises(UsageError) as info:
        from_file(**values)
    assert message in str(info.value)


@pytest.mark.parametrize("options, message", [
    ({"seeds": "abc"}, "--seed 'abc': not an integer."),
    ({"seeds": str(2**63)}, f"--seed {2**63}: must be at most"),
    ({"crop": -5}, "--crop -5: must be at least 16"),
    ({"limit": 0}, "--limit 0: must be at least 1"),
    ({"methods": ","}, "--methods: must not be empty."),
    ({"device": "cuda:x"}, "--device 'cuda:x': not a device"),
    ({"gpus_per_cell": "nan"}, "--gpus-per-cell: expected a finite number, got nan."),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(UsageError) as info:
        run_config_from({}, options)
    assert message in str(info.value)


def test_the_python_api_is_checked_too():
    with pytest.raises(UsageError, match="--limit 0: must be at least 1"):
        RunConfig(methods=["tv"], degradations=["noise"], limit=0)
    with pytest.raises(UsageError, match=r"--seed\[0\]: expected an integer, got the string '1'"):
        RunConfig(methods=["tv"], degradations=["noise"], seeds=["1"])
    config = RunConfig(methods=("tv",), degradations=["noise"], seeds=(0, 1), gpus_per_cell=1)
    assert config.methods == ["tv"] and config.seeds == [0, 1] and config.gpus_per_cell == 1.0


def test_missing_device_is_one_error_up_front():
    import torch

    check_device_available("cpu")
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: absent on every machine
    with pytest.raises(BenchError, match=rf"--device {absent}: this machine has .*; use --device cpu"):
        check_device_available(absent)


def test_report_filters_are_checked_against_the_store():
    df = pd.DataFrame({"method": ["tv", "dip"], "method_label": ["tv", "dip[lr=0.01]"], "degradation": ["noise"] * 2,
                       "degradation_label": ["noise"] * 2, "dataset": ["builtin"] * 2, "profile": ["smoke"] * 2})
    assert check_filters(df, ["tv", "dip[lr=0.01]"], ["noise"], "builtin", "smoke") == (["tv", "dip[lr=0.01]"],
                                                                                          ["noise"])
    with pytest.raises(UnknownNameError, match="--methods dipp: the store has no method 'dipp'. Did you mean 'dip'?"):
        check_filters(df, ["dipp"], [])
    with pytest.raises(UnknownNameError, match="--profile quick: the store has no profile 'quick'. It holds: smoke."):
        check_filters(df, [], [], profile="quick")


def test_the_default_grid_is_the_headline_comparison():
    config = run_config_from({}, {})
    assert config.methods == ["identity", "tv", "flowprior"] and config.degradations == ["noise", "jpeg", "multi"]


def test_usual_device_names_are_checked_without_torch():
    import subprocess
    import sys

    code = ("import sys; from bench.config import RunConfig; RunConfig(methods=['tv'], degradations=['noise'], "
            "device='cuda:1'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
