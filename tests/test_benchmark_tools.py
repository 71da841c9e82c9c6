"""tools/benchmark.py and tools/get_flops.py on a tiny SegFormer: every mode runs and reports what it measured.
No timing is asserted: speed belongs in docs/benchmark.md, not in unit tests."""
import json
import sys

import pytest
import torch

from engine_fixtures import load_tool, restore_global_state, write_tiny_config  # noqa: F401
from segkit import Config


benchmark = load_tool('benchmark')
get_flops = load_tool('get_flops')


def run_main(tool, argv, monkeypatch, capsys) -> dict:
    """Run a tool's ``main`` with ``argv``; returns the JSON of its last output line."""
    monkeypatch.setattr(sys, 'argv', [tool.__file__, *argv])
    tool.main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    return str(write_tiny_config(tmp_path_factory.mktemp('bench')))


@pytest.mark.parametrize('mode, extra', [('infer', []), ('infer', ['--amp', 'bf16']), ('train', []),
                                         ('slide', ['--shape', '40', '72'])])
def test_benchmark_model_modes_report_latency_and_memory(tiny_config, monkeypatch, capsys, mode, extra):
    argv = [tiny_config, '--mode', mode, '--shape', '32', '32', '--repeat', '3', '--warmup', '1', *extra]
    result = run_main(benchmark, argv, monkeypatch, capsys)
    assert result['mode'] == mode and result['amp'] == (extra[1] if extra[:1] == ['--amp'] else None)
    assert 0 < result['min_ms'] <= result['median_ms']
    assert result['images_per_s'] == pytest.approx(1000 * result['batch'] / result['median_ms'], rel=0.01)
    assert result['peak_memory_mb'] > 0


def test_benchmark_amp_goes_through_the_config_keys(tiny_config):
    infer = Config.fromfile(tiny_config)
    benchmark.apply_amp(infer, benchmark.argparse.Namespace(amp='bf16', mode='infer'))
    assert infer.model.test_cfg.autocast_dtype == 'bfloat16'
    train = Config.fromfile(tiny_config)
    benchmark.apply_amp(train, benchmark.argparse.Namespace(amp='bf16', mode='train'))
    assert train.optim_wrapper.type == 'AmpOptimWrapper' and train.optim_wrapper.dtype == 'bfloat16'
    assert train.optim_wrapper.optimizer.type == 'AdamW'  # the rest of the wrapper is kept


def test_benchmark_train_step_updates_the_model(tiny_config):
    from segkit.apis import init_model
    cfg = Config.fromfile(tiny_config)
    model = init_model(cfg)
    args = benchmark.argparse.Namespace(mode='train', shape=(32, 32), batch=2)
    step = benchmark.model_runner(model, cfg, args, torch.device('cpu'))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step()
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in changed) and any(k.startswith('decode_head.') for k in changed)


def test_benchmark_data_mode_draws_batches(tiny_config, monkeypatch, capsys):
    result = run_main(benchmark, [tiny_config, '--mode', 'data', '--workers', '0', '--repeat', '3'],
                      monkeypatch, capsys)
    assert result['batch'] == 2 and result['images_per_s'] > 0
    assert 'shape' not in result                                    # the pipeline decides the image size


def test_benchmark_matmul_mode_reports_gflops(tiny_config, monkeypatch, capsys):
    result = run_main(benchmark, [tiny_config, '--mode', 'matmul', '--matmul-size', '256', '--repeat', '3'],
                      monkeypatch, capsys)
    assert result['gflop_per_s'] == pytest.approx(2 * 256**3 / result['median_ms'] / 1e6, rel=0.03)


def test_benchmark_eval_mode_reports_memory_at_each_decade(tiny_config, monkeypatch, capsys):
    # 4 validation images, cycled to 12
    result = run_main(benchmark, [tiny_config, '--mode', 'eval', '--num-images', '12'], monkeypatch, capsys)
    assert sorted(int(n) for n in result['resident_mb_after_images']) == [1, 10, 12]
    assert all(mb > 0 for mb in result['resident_mb_after_images'].values())
    assert result['peak_memory_mb'] >= max(result['resident_mb_after_images'].values()) * 0.9


def attention_macs(cfg: Config, size: int) -> int:
    """Multiply-accumulates of the MiT attention products (q k^T and attention x v) at a size x size input."""
    backbone = cfg.model.backbone
    total, side = 0, size
    for i, layers in enumerate(backbone.num_layers):
        side = (side + 2 * (backbone.patch_sizes[i] // 2) - backbone.patch_sizes[i]) // [4, 2, 2, 2][i] + 1
        queries, keys = side * side, (side // backbone.sr_ratios[i]) ** 2
        total += layers * 2 * queries * keys * backbone.embed_dims * backbone.num_heads[i]
    return total


def test_get_flops_counts_cpu_attention(tiny_config):
    cfg = Config.fromfile(tiny_config)
    from segkit.apis import init_model
    model = init_model(cfg)
    counts = get_flops.count(model, (64, 64))
    counter = get_flops.FlopCounterMode(display=False)  # torch's own formulas only
    with torch.inference_mode(), counter:
        model(torch.randn(1, 3, 64, 64), None, mode='tensor')
    assert counts['macs'] - counter.get_total_flops() // 2 == attention_macs(cfg, 64)
    assert counts['params'] == sum(p.numel() for p in model.parameters())
    assert sum(counts['params_by_part'].values()) == counts['params']


def test_get_flops_main_prints_macs_and_twice_them(tiny_config, monkeypatch, capsys):
    result = run_main(get_flops, [tiny_config, '--shape', '64', '64'], monkeypatch, capsys)
    assert result['shape'] == [64, 64] and result['params_m'] > 0
    assert result['gflops_2xmac'] == pytest.approx(2 * result['gflops_mac'], abs=0.011)


@pytest.mark.parametrize('tool', [get_flops, benchmark])
def test_one_shape_value_is_a_square_and_three_are_refused(tiny_config, monkeypatch, capsys, tool):
    extra = ['--repeat', '1', '--warmup', '0'] if tool is benchmark else []
    assert run_main(tool, [tiny_config, '--shape', '32', *extra], monkeypatch, capsys)['shape'] == [32, 32]
    monkeypatch.setattr(sys, 'argv', [tool.__file__, tiny_config, '--shape', '32', '32', '32'])
    with pytest.raises(SystemExit) as e:
        tool.main()
    assert e.value.code == 2 and 'one value for a square; got 3 values' in capsys.readouterr().err


def test_get_flops_reports_a_config_error_in_one_line(tmp_path, capsys):
    assert get_flops.main([str(tmp_path / 'missing.py')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: config file not found') and 'Traceback' not in err
