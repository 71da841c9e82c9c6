# SegFormer-B0 with bfloat16 autocast in training (AmpOptimWrapper) and inference (test_cfg.autocast_dtype).
# Opt-in: about 2x faster on CPUs with AVX512-BF16 / AMX and on recent GPUs; accuracy change in docs/benchmark.md.
_base_ = ['./segformer_mit-b0_8xb2-160k_ade20k-512x512.py']
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
model = dict(test_cfg=dict(autocast_dtype='bfloat16'))
