"Decoded cache: items equal the decoded ones, the key follows the files, workers read it, runs.build_dataset hooks it."
import os, time
import numpy as np, torch
from torch.utils.data import DataLoader
from avss_nb.data import AVSBenchSemantic, collate_items
from avss_nb.cache import cached, cache_key
from avsbench_fixtures import write_semantic

def _same(x, y):
    assert list(x) == list(y)
    for k in x:
        if k == 'audio': assert y[k].dtype == torch.float32 and torch.allclose(x[k], y[k], rtol=2**-10, atol=1e-3), k
        elif torch.is_tensor(x[k]): assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k
        else: assert x[k] == y[k], k

def test_cached_avsbench_semantic_equals_decoded(tmp_path):
    write_semantic(tmp_path/'avs', [dict(uid='a', label='v1m', split='train'), dict(uid='b', label='v2', split='train'),
                                    dict(uid='c', label='v1s', split='train')], size=(40, 30))
    ds = AVSBenchSemantic(tmp_path/'avs', ['v1s', 'v1m', 'v2'], 'train', size=32)
    c = cached(ds, tmp_path/'cache', progress=False)
    assert len(c) == len(ds) and c.video_ids == ds.video_ids
    for i in range(len(ds)): _same(ds[i], c[i])
    loader = DataLoader(c, batch_size=1, num_workers=1, collate_fn=collate_items)   # memory maps reopen in the worker
    for i, batch in enumerate(loader): assert torch.equal(batch['frames'][0], ds[i]['frames'])

def test_key_follows_files_and_options(tmp_path):
    write_semantic(tmp_path/'avs', [dict(uid='a', label='v2', split='train')], size=(40, 30))
    ds = AVSBenchSemantic(tmp_path/'avs', ['v2'], 'train', size=32)
    key = cache_key(ds)
    assert cache_key(AVSBenchSemantic(tmp_path/'avs', ['v2'], 'train', size=32)) == key
    assert cache_key(AVSBenchSemantic(tmp_path/'avs', ['v2'], 'train', size=24)) != key
    assert cache_key(AVSBenchSemantic(tmp_path/'avs', ['v2'], 'train', size=32, binary=True)) != key
    frame = tmp_path/'avs'/'v2'/'a'/'frames'/'0.jpg'
    st = frame.stat(); os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))       # the file changed
    assert cache_key(AVSBenchSemantic(tmp_path/'avs', ['v2'], 'train', size=32)) != key

def test_build_dataset_hook(tmp_path):
    from avss_nb.config import get_settings
    from avss_nb.runs import build_dataset
    settings = get_settings(data_root=str(tmp_path))
    plain = build_dataset('toy:v1s', 'train', 'binary', 'smoke', settings)
    fast = build_dataset('toy:v1s', 'train', 'binary', 'smoke', settings, cache=True)
    assert type(fast).__name__ == 'CachedDataset' and (tmp_path/'cache').is_dir() and len(fast) == len(plain)
    for i in range(len(plain)): _same(plain[i], fast[i])
