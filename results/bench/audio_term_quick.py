"Does AAVS's audio term vary between clips after training? Its size against the content queries, and whether it tells classes apart."
# run from the repository root: .venv/bin/python results/bench/audio_term_quick.py TASK [--split test]
# (the quick FreeAVS AAVS run of TASK, seed 0, retrained for its weights if its checkpoint is missing)
import argparse, json, time
import torch, torch.nn.functional as F
from avss_nb.config import apply_threads
from avss_nb.reproduce import task_spec, run_model, revision
from avss_nb.runs import build_dataset, load_record

@torch.no_grad()
def audio_terms(model, dataset) -> tuple:
    "Per audio example: the encoder embedding [M,128], the projected audio `a` [M,D], the audio term added to each query [M,Q,D], its class and its video."
    gen, encoded, embs, terms, classes, videos = model.audio_queries, [], [], [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        encoded.append(model.audio_encoder(item['audio']))                            # [T,128]
        a = gen.audio_proj(encoded[-1])                                               # [T,D]
        if gen.audio_norm is not None: a = gen.audio_norm(a)
        sim = F.cosine_similarity(gen.queries_embedder.weight[None], a[:, None], dim=-1) if gen.mode == 'adaptive' else torch.ones(len(a), gen.queries_embedder.num_embeddings)
        embs.append(a); terms.append(sim[..., None] * a[:, None]); classes += [item.get('category', '?')] * len(a); videos += [item['id']] * len(a)
    return torch.cat(encoded), torch.cat(embs), torch.cat(terms), classes, videos

def nearest_centroid_accuracy(x:torch.Tensor, classes:list, videos:list) -> float:
    "Share of audio examples whose nearest class centroid (cosine), built from the other videos' examples only, is their own class."
    x, names = F.normalize(x, dim=-1), sorted(set(classes))
    of_class = {c: torch.tensor([k == c for k in classes]) for c in names}
    hits = total = 0
    for v in sorted(set(videos)):
        mine = torch.tensor([u == v for u in videos])
        own = classes[int(mine.nonzero()[0])]
        keep = [c for c in names if (of_class[c] & ~mine).any()]
        if own not in keep: continue                                                   # its class has no other video
        cents = torch.stack([F.normalize(x[of_class[c] & ~mine].mean(0), dim=0) for c in keep])
        hits += int(((x[mine] @ cents.T).argmax(1) == keep.index(own)).sum()); total += int(mine.sum())
    return hits / max(total, 1)

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('task'); p.add_argument('--split', default='test')
    args = p.parse_args(); apply_threads(1)
    spec = task_spec('aavs', args.task, 'freeavs', 'quick', 0)
    t = time.time(); model = run_model(spec, progress=False).eval()
    ds = build_dataset(spec.dataset, args.split, spec.task, spec.preset)
    emb, a, term, classes, videos = audio_terms(model, ds)
    content = model.audio_queries.queries_features.weight.detach()                     # [Q,D]
    term_norm = term.norm(dim=-1)                                                      # [M,Q]
    spread = (term - term.mean(0, keepdim=True)).norm(dim=-1)                          # [M,Q] distance from the mean term
    cos = F.normalize(a, dim=-1) @ F.normalize(a, dim=-1).T
    same = torch.tensor([[ci == cj for cj in classes] for ci in classes]); off = ~torch.eye(len(classes), dtype=torch.bool)
    out = dict(revision=revision(), machine='2-core x86_64 CPU, 1 torch thread', task=args.task, split=args.split, run=spec.key(),
               git=load_record(spec.key())['git'], examples=len(classes), classes=len(set(classes)),
               audio_norm=model.audio_queries.audio_norm is not None, mode=model.audio_queries.mode,
               content_query_norm_mean=float(content.norm(dim=-1).mean()),
               audio_term_norm_mean=float(term_norm.mean()),
               audio_term_over_content=float((term_norm / content.norm(dim=-1)[None]).mean()),
               audio_term_spread_over_content=float((spread / content.norm(dim=-1)[None]).mean()),
               projected_audio_cosine_same_class=float(cos[same & off].mean()), projected_audio_cosine_other_class=float(cos[~same].mean()),
               projected_audio_nearest_centroid_accuracy=nearest_centroid_accuracy(a, classes, videos),
               encoder_embedding_nearest_centroid_accuracy=nearest_centroid_accuracy(emb, classes, videos), seconds=round(time.time() - t))
    path = f'results/bench/audio-term-aavs-{args.task}-{spec.key()}-{args.split}.json'
    json.dump(out, open(path, 'w'), indent=1); print(path, json.dumps(out, indent=1), flush=True)
