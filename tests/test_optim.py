"""OptimWrapper / AmpOptimWrapper behaviour and the paramwise optimizer constructor (MMEngine semantics)."""
import contextlib
import logging

import pytest
import torch
import torch.nn as nn

from conftest import load_reference
from segkit.engine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from segkit.registry import MODELS


def sgd_wrapper(model: nn.Module, **kwargs) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=1.0), **kwargs)


# --- OptimWrapper -------------------------------------------------------------------------------------------

def test_gradient_accumulation_divides_each_window_by_its_length():
    """7 iterations with accumulative_counts=3: updates after iterations 3, 6 and 7; the tail window has one
    iteration, so its loss is not divided by 3."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    wrapper = sgd_wrapper(model, accumulative_counts=3)
    wrapper.initialize_count_status(model, init_counts=0, max_counts=7)
    weights = []
    for i in range(7):
        loss = model(torch.tensor([[float(i + 1)]])).sum()  # d loss / d weight = i + 1
        wrapper.update_params(loss)
        weights.append(model.weight.item())
    # SGD lr=1: the weight moves by minus the mean gradient of each window.
    assert weights == pytest.approx([0, 0, -2, -2, -2, -7, -14])


def test_accumulation_without_count_status_always_divides_by_counts():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    wrapper = sgd_wrapper(model, accumulative_counts=2)
    for _ in range(2):
        wrapper.update_params(model(torch.ones(1, 1)).sum() * 4)
    assert model.weight.item() == pytest.approx(-4.0)


def test_optim_context_skips_ddp_sync_on_non_update_iterations():
    class FakeDDP(nn.Linear):
        no_sync_calls = 0

        @contextlib.contextmanager
        def no_sync(self):
            FakeDDP.no_sync_calls += 1
            yield

    model = FakeDDP(1, 1)
    wrapper = sgd_wrapper(model, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 5)
    synced = []
    for _ in range(5):
        before = FakeDDP.no_sync_calls
        with wrapper.optim_context(model):
            loss = model(torch.ones(1, 1)).sum()
        wrapper.update_params(loss)
        synced.append(FakeDDP.no_sync_calls == before)
    assert synced == [False, True, False, True, True]  # iterations 2, 4 and the last one update


def test_clip_grad_norm_clips_and_records_the_norm():
    model = nn.Linear(3, 1)
    wrapper = sgd_wrapper(model, clip_grad=dict(max_norm=0.1, norm_type=2))
    loss = model(torch.full((1, 3), 10.0)).sum()
    loss.backward()
    expected_norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    wrapper.step()
    assert wrapper.last_grad_norm == pytest.approx(expected_norm)
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert clipped == pytest.approx(0.1, rel=1e-4)


def test_clip_grad_value():
    model = nn.Linear(3, 1)
    wrapper = sgd_wrapper(model, clip_grad=dict(type='value', clip_value=0.5))
    model(torch.full((1, 3), 10.0)).sum().backward()
    wrapper.step()
    assert all(p.grad.abs().max() <= 0.5 for p in model.parameters())
    assert wrapper.last_grad_norm is None


@pytest.mark.parametrize('clip_grad, error', [(dict(type='abs', max_norm=1), 'norm'), (dict(norm_type=2), 'max_norm'),
                                              ({}, 'non-empty')])
def test_bad_clip_grad_is_named(clip_grad, error):
    with pytest.raises((ValueError, KeyError, TypeError), match=error):
        sgd_wrapper(nn.Linear(1, 1), clip_grad=clip_grad)


def test_lr_momentum_and_state_dict_round_trip():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    optimizer = torch.optim.SGD([{'params': model[0].parameters()}, {'params': model[1].parameters(), 'lr': 0.5}],
                                lr=0.1, momentum=0.9)
    wrapper = OptimWrapper(optimizer)
    assert wrapper.get_lr() == {'lr': [0.1, 0.5], 'base_lr': [0.1]}
    assert wrapper.get_momentum() == {'momentum': [0.9, 0.9]}
    assert len(wrapper.param_groups) == 3  # the base-settings group rides along for the schedulers
    wrapper.update_params(model(torch.ones(1, 2)).sum())
    wrapper.param_groups[-1]['lr'] = 0.05
    state = wrapper.state_dict()

    fresh_model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    fresh = OptimWrapper(torch.optim.SGD([{'params': fresh_model[0].parameters()},
                                          {'params': fresh_model[1].parameters()}], lr=0.1, momentum=0.9))
    fresh.load_state_dict(state)
    assert fresh.get_lr() == {'lr': [0.1, 0.5], 'base_lr': [0.05]}
    momentum_buffers = [s['momentum_buffer'] for s in fresh.optimizer.state.values()]
    assert len(momentum_buffers) == 4 and all(b is not None for b in momentum_buffers)


def test_adam_momentum_is_beta1_and_single_group_has_no_base_lr():
    wrapper = OptimWrapper(torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=1e-3, betas=(0.8, 0.99)))
    assert wrapper.get_momentum() == {'momentum': [0.8]}
    assert wrapper.get_lr() == {'lr': [1e-3]}


# --- AmpOptimWrapper ----------------------------------------------------------------------------------------

def test_amp_bfloat16_on_cpu_autocasts_without_a_scaler():
    model = nn.Linear(4, 2)
    wrapper = AmpOptimWrapper(dtype='bfloat16', optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert wrapper.loss_scaler is None
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    before = model.weight.detach().clone()
    wrapper.update_params(out.float().sum())
    assert not torch.equal(before, model.weight) and 'loss_scaler' not in wrapper.state_dict()


def test_amp_float16_on_cpu_scales_the_loss_and_saves_the_scaler():
    model = nn.Linear(4, 2)
    wrapper = AmpOptimWrapper(dtype='float16', loss_scale=dict(init_scale=256.0, growth_interval=1),
                              optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.float16
    wrapper.backward(out.float().sum())
    expected_grad = torch.full((2,), 3.0)  # d(sum)/d(bias) = batch size, times the scale until unscaled
    assert torch.allclose(model.bias.grad, expected_grad * 256)
    wrapper.step()
    assert torch.allclose(model.bias.grad, expected_grad)
    state = wrapper.state_dict()
    assert state['loss_scaler']['scale'] == 512.0  # grew after one finite step (growth_interval=1)

    fresh = AmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    fresh.load_state_dict(state)
    assert fresh.loss_scaler.get_scale() == 512.0


def test_amp_fixed_loss_scale_stays_fixed_and_skips_nonfinite_steps():
    model = nn.Linear(1, 1)
    wrapper = AmpOptimWrapper(dtype='float16', loss_scale=512.0, optimizer=torch.optim.SGD(model.parameters(), lr=1))
    before = model.weight.detach().clone()
    wrapper.update_params(model(torch.ones(1, 1)).sum() * float('inf'))
    assert torch.equal(model.weight, before)  # inf gradients: the step is skipped
    assert wrapper.loss_scaler.get_scale() == 512.0


def test_amp_rejects_unknown_dtype_and_unsupported_autocast(monkeypatch):
    params = nn.Linear(1, 1).parameters()
    with pytest.raises(ValueError, match='float64'):
        AmpOptimWrapper(dtype='float64', optimizer=torch.optim.SGD(params, lr=1))
    # A torch that silently disables CPU float16 autocast must give an error, not float32 training.
    monkeypatch.setattr(torch, 'is_autocast_enabled', lambda *args: False)
    with pytest.raises(RuntimeError, match='cannot autocast'):
        AmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1))


# --- build_optim_wrapper and paramwise_cfg ------------------------------------------------------------------

class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.dw = nn.Conv2d(4, 4, 3, groups=4)
        self.bn = nn.BatchNorm2d(4)
        self.gn_named_plainly = nn.GroupNorm(2, 4)
        self.head_norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(4))


def settings_by_name(model: nn.Module, wrapper: OptimWrapper) -> dict:
    names = {id(p): n for n, p in model.named_parameters()}
    result = {}
    for group in wrapper.optimizer.param_groups:
        assert len(group['params']) == 1
        result[names[id(group['params'][0])]] = (group['lr'], group['weight_decay'])
    return result


def build(model: nn.Module, paramwise_cfg: dict, **optimizer) -> OptimWrapper:
    optimizer = dict(type='SGD', lr=0.1, weight_decay=0.01, **optimizer)
    return build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=optimizer, paramwise_cfg=paramwise_cfg))


def test_without_paramwise_cfg_one_group_holds_every_parameter():
    model = ToyNet()
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                                              clip_grad=dict(max_norm=1.0)))
    assert type(wrapper) is OptimWrapper and type(wrapper.optimizer) is torch.optim.AdamW
    assert len(wrapper.optimizer.param_groups) == 1
    assert len(wrapper.optimizer.param_groups[0]['params']) == len(list(model.parameters()))
    assert wrapper.clip_grad_kwargs == {'max_norm': 1.0}


def test_module_rules_detect_norms_by_type_and_respect_precedence():
    model = ToyNet()
    settings = settings_by_name(model, build(model, dict(norm_decay_mult=0.0, bias_lr_mult=2.0, bias_decay_mult=0.5,
                                                         dwconv_decay_mult=0.1, flat_decay_mult=0.3)))
    assert settings == {
        'stem.weight': (0.1, 0.01),
        'stem.bias': (0.2, 0.005),
        'dw.weight': (0.1, 0.001),
        'dw.bias': (0.2, 0.005),  # bias rule before dwconv rule
        'bn.weight': (0.1, 0.0), 'bn.bias': (0.1, 0.0),  # norm biases keep the base lr
        'gn_named_plainly.weight': (0.1, 0.0), 'gn_named_plainly.bias': (0.1, 0.0),
        'head_norm.weight': (0.1, 0.0), 'head_norm.bias': (0.1, 0.0),
        'head.weight': (0.1, 0.01),
        'head.bias': (0.2, 0.005),
        'scale': (0.1, 0.003),  # a 1-D parameter of no special module
    }


def test_custom_keys_longest_then_alphabetical_match_wins_and_overrides_module_rules():
    model = ToyNet()
    custom_keys = {
        'head': dict(lr_mult=10.0),
        'head_norm': dict(decay_mult=0.0),  # longer than 'head': wins for head_norm.*
        'bias': dict(lr_mult=3.0),          # 'bias' and 'stem' are equally long: alphabetical, so 'bias' wins
        'stem': dict(lr_mult=5.0),
        'absent': dict(lr_mult=0.0),
    }
    settings = settings_by_name(model, build(model, dict(custom_keys=custom_keys, norm_decay_mult=0.5)))
    assert settings['head_norm.weight'] == (0.1, 0.0)
    assert settings['head_norm.bias'] == (0.1, 0.0)  # 'head_norm' (9 chars) beats 'bias' (4 chars)
    assert settings['head.weight'] == (1.0, 0.01)
    assert settings['head.bias'] == pytest.approx((0.3, 0.01))  # 'head' and 'bias': alphabetical, 'bias'
    assert settings['stem.bias'] == pytest.approx((0.3, 0.01))
    assert settings['stem.weight'] == (0.5, 0.01)
    assert settings['bn.weight'] == (0.1, 0.005)  # no key matches: module rules apply
    assert settings['bn.bias'] == pytest.approx((0.3, 0.01))  # custom key overrides norm_decay_mult


def test_custom_key_entries_stay_in_the_group_and_frozen_parameters_are_left_out(caplog):
    model = ToyNet()
    model.stem.requires_grad_(False)
    with caplog.at_level(logging.INFO, logger='segkit'):
        wrapper = build(model, dict(custom_keys={'head.': dict(lr_mult=2.0, momentum=0.5), 'nothing': {}}),
                        momentum=0.9)
    groups = wrapper.optimizer.param_groups
    assert len(groups) == len(list(model.parameters())) - 2
    head_group = next(g for g in groups if g['params'][0] is model.head.weight)
    assert head_group['lr'] == 0.2 and head_group['momentum'] == 0.5 and head_group['lr_mult'] == 2.0
    assert "'head.'" in caplog.text and 'matched 2 parameters' in caplog.text
    assert "'nothing'" in caplog.text and 'matched no parameter' in caplog.text
    assert 'requires_grad=False' in caplog.text


def test_shared_parameters_need_bypass_duplicate():
    model = nn.Module()
    model.a = nn.Linear(2, 2)
    model.b = model.a
    with pytest.raises(ValueError, match='more than one parameter group'):
        build(model, dict(norm_decay_mult=0.0))
    wrapper = build(model, dict(norm_decay_mult=0.0, bypass_duplicate=True))
    assert len(wrapper.optimizer.param_groups) == 2


@pytest.mark.parametrize('paramwise_cfg, optimizer, error', [
    (dict(norm_decay=0.0), dict(type='SGD', lr=0.1), 'unknown keys'),
    (dict(norm_decay_mult=0.0), dict(type='SGD', lr=0.1), 'weight_decay'),
    (dict(custom_keys={'x': dict(decay_mult=0.0)}), dict(type='SGD', lr=0.1), 'weight_decay'),
    (dict(custom_keys={'x': 0.5}), dict(type='SGD', lr=0.1), 'custom_keys'),
])
def test_bad_paramwise_cfg_is_named(paramwise_cfg, optimizer, error):
    with pytest.raises((KeyError, ValueError, TypeError), match=error):
        build_optim_wrapper(ToyNet(), dict(optimizer=optimizer, paramwise_cfg=paramwise_cfg))


def test_unknown_optimizer_and_wrapper_are_named():
    with pytest.raises(KeyError, match='AdamX'):
        build_optim_wrapper(ToyNet(), dict(optimizer=dict(type='AdamX', lr=0.1)))
    with pytest.raises(KeyError, match='FancyOptimWrapper'):
        build_optim_wrapper(ToyNet(), dict(type='FancyOptimWrapper', optimizer=dict(type='SGD', lr=0.1)))


def test_segformer_param_groups_match_mmengine():
    """Every SegFormer-B0 parameter gets the lr and weight decay MMEngine assigns (param_groups.json)."""
    reference = load_reference('param_groups.json')
    model_cfg = load_reference('segformer_b0.pt')['model_cfg']
    try:
        model = MODELS.build(model_cfg)
    except KeyError as e:
        pytest.skip(f'segkit.models cannot build the SegFormer-B0 reference model yet: {e}')
    wrapper = build_optim_wrapper(model, reference['optim_wrapper'])
    names = {id(p): n for n, p in model.named_parameters()}
    got = {names[id(g['params'][0])]: {'lr': g['lr'], 'weight_decay': g['weight_decay']}
           for g in wrapper.optimizer.param_groups}
    assert got == reference['groups']
    assert got['backbone.layers.1.2.weight']['weight_decay'] == 0.01  # the stage-closing LayerNorm keeps decay
    assert wrapper.get_lr()['base_lr'] == [6e-05]
