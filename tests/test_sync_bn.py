"""SyncBatchNorm on CPU: two gloo processes, each with part of a batch, must match one process with BatchNorm
on the whole batch (outputs, input and parameter gradients, running statistics)."""
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from segkit.dist import broadcast_buffers
from segkit.models.layers.norm import SyncBatchNorm, convert_sync_batchnorm, revert_sync_batchnorm

SPLIT = (3, 2)  # uneven per-rank batches, so the counts must be summed correctly


def tiny_net(norm: type) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm(4, momentum=0.3), nn.ReLU(), nn.Conv2d(4, 2, 1))


def make_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SPLIT), 3, 5, 6, generator=gen) * 2 + 1
    loss_weights = torch.randn(sum(SPLIT), 2, 5, 6, generator=gen)
    return x, loss_weights


def run_rank(rank: int, init_file: str, state_dict: dict, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=len(SPLIT))
    try:
        net = tiny_net(SyncBatchNorm)
        net.load_state_dict(state_dict)
        x, loss_weights = make_inputs()
        part = slice(sum(SPLIT[:rank]), sum(SPLIT[:rank + 1]))
        x = x[part].clone().requires_grad_(True)
        out = net(x)
        (out * loss_weights[part]).sum().backward()
        grads = {}
        for name, param in net.named_parameters():  # what DDP does: average the gradients over ranks
            dist.all_reduce(param.grad)
            grads[name] = param.grad / len(SPLIT)
        torch.save({'out': out.detach(), 'x_grad': x.grad, 'grads': grads, 'buffers': dict(net.named_buffers())},
                   f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_cpu_sync_bn_matches_batchnorm_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    reference = tiny_net(nn.BatchNorm2d)
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        bn = reference[1]
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    state_dict = {k: v.clone() for k, v in reference.state_dict().items()}

    mp.spawn(run_rank, args=(str(tmp_path / 'pg'), state_dict, str(tmp_path)), nprocs=len(SPLIT), join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(len(SPLIT))]

    x, loss_weights = make_inputs()
    x.requires_grad_(True)
    out = reference(x)
    (out * loss_weights).sum().backward()  # the sum of the ranks' losses

    assert torch.allclose(torch.cat([r['out'] for r in ranks]), out, atol=1e-5)
    assert torch.allclose(torch.cat([r['x_grad'] for r in ranks]), x.grad, atol=1e-5)
    for name, param in reference.named_parameters():
        for r in ranks:  # DDP's average of the ranks' gradients = gradient of the mean of their losses
            assert torch.allclose(r['grads'][name], param.grad / len(SPLIT), atol=1e-5), name
    for name, buffer in reference.named_buffers():
        for r in ranks:
            assert torch.allclose(r['buffers'][name].to(buffer.dtype), buffer, atol=1e-5), name


def test_single_process_sync_bn_is_batchnorm():
    torch.manual_seed(0)
    sync, plain = SyncBatchNorm(3, momentum=None), nn.BatchNorm2d(3, momentum=None)
    x = torch.randn(4, 3, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for _ in range(2):
            assert torch.allclose(sync(x), plain(x))
    assert torch.allclose(sync.running_var, plain.running_var) and sync.num_batches_tracked.item() == 2
    sync.eval(), plain.eval()
    assert torch.allclose(sync(x), plain(x))
    assert list(sync.state_dict()) == list(plain.state_dict())


def test_convert_and_revert_keep_parameters_and_keys():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(4)))
    keys = list(net.state_dict())
    weight = net[1].weight
    net = convert_sync_batchnorm(net)
    assert isinstance(net[1], SyncBatchNorm) and isinstance(net[2][0], SyncBatchNorm)
    assert net[1].weight is weight and list(net.state_dict()) == keys
    net = revert_sync_batchnorm(net.eval())
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in net.modules())
    assert net[1].weight is weight and list(net.state_dict()) == keys and not net[1].training
    assert net[2][0](torch.randn(2, 4)).shape == (2, 4)  # the reverted layer accepts 1-D feature inputs
    with pytest.raises(ValueError, match='channel'):
        net[1](torch.randn(4))


def broadcast_on_rank(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        net = tiny_net(nn.BatchNorm2d)
        net.train()(torch.randn(4, 3, 5, 6) * (rank + 1) + rank)  # per-rank running statistics
        broadcast_buffers(net)
        torch.save(dict(net.named_buffers()), f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_plain_batchnorm_statistics_are_rank_0s_before_validation(tmp_path):
    """segkit's DDP does not sync buffers; the train loop gives every rank rank 0's (the ones checkpoints save)
    before validating, so the score in the log is the saved model's."""
    mp.spawn(broadcast_on_rank, args=(str(tmp_path / 'pg'), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(2))
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert not torch.equal(rank0['1.running_mean'], torch.zeros(4))
