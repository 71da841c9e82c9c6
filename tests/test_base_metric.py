"""BaseMetric: MMEngine's per-sample results protocol, single-process and gathered across ranks in dataset order."""
import json

import torch.distributed as dist
import torch.multiprocessing as mp

from segkit.datasets import DefaultSampler
from segkit.evaluation import BaseMetric


class OrderMetric(BaseMetric):
    """Records the sample indices it saw; reports them and their count."""

    default_prefix = 'order'

    def process(self, data_batch, data_samples):
        self.results.extend(sample['idx'] for sample in data_samples)

    def compute_metrics(self, results):
        return {'seen': list(results), 'count': len(results)}


def test_single_process_metric_prefixes_keys_and_clears_its_results():
    metric = OrderMetric(prefix='mine')
    metric.process(None, [{'idx': 0}, {'idx': 1}])
    metric.process(None, [{'idx': 2}])
    assert metric.evaluate(size=2) == {'mine/seen': [0, 1], 'mine/count': 2}
    assert metric.results == []
    metric.process(None, [{'idx': 5}])
    assert OrderMetric().default_prefix == 'order' and metric.evaluate(size=1) == {'mine/seen': [5], 'mine/count': 1}


def evaluate_on_rank(rank, init_file, out_file, size, round_up):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    metric = OrderMetric()
    for idx in DefaultSampler(range(size), shuffle=False, round_up=round_up):  # this rank's share
        metric.process(None, [{'idx': int(idx)}])
    result = metric.evaluate(size)
    with open(f'{out_file}.{rank}', 'w') as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_results_of_two_ranks_come_back_in_dataset_order_without_padding(tmp_path):
    for size, round_up in ((5, True), (5, False), (4, True)):
        out = tmp_path / f'{size}_{round_up}'
        mp.spawn(evaluate_on_rank, args=(str(tmp_path / f'pg_{size}_{round_up}'), str(out), size, round_up),
                 nprocs=2, join=True)
        for rank in range(2):  # every rank gets rank 0's result
            assert json.loads((tmp_path / f'{out.name}.{rank}').read_text()) == {
                'order/seen': list(range(size)), 'order/count': size}
