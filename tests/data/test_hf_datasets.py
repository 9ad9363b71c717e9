"""Local Hugging Face `datasets` sources (the `hf` extra): chat `messages`, prompt/completion rows, preference pairs
and prompt/answer tasks, read from a `save_to_disk` directory or from data files; nothing is downloaded."""
import json
import sys

import pytest

from r1jax import config as config_lib
from r1jax import stage_config as sc
from r1jax.data import chat, rows as rows_lib, tasks

CONVS = [
    {'id': 'c1', 'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi!'},
                              {'role': 'assistant', 'content': 'Hello.'}, {'role': 'user', 'content': 'And?'},
                              {'role': 'assistant', 'content': 'Bye.'}]},
    {'id': 'c2', 'messages': [{'role': 'user', 'content': 'Capital of France?'},
                              {'role': 'assistant', 'content': 'Paris.'}]},
    {'id': 'c3', 'messages': [{'role': 'user', 'content': '2 + 2?'}, {'role': 'assistant', 'content': '4'}]},
]
PAIRS = [{'prompt': f'Q{i}', 'chosen': f'good {i}', 'rejected': f'bad {i}', 'score': i} for i in range(6)]
PROBLEMS = [{'problem': f'What is {i} + {i}?', 'answer': str(2 * i), 'uid': f'p{i}'} for i in range(5)]


def _save(datasets, path, **splits):
  datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(path))
  return str(path)


def _sft_sources(*sources):
  c = config_lib.base_config()
  c.data = {'sources': tuple(sources)}
  from r1jax.sft.trainer import load_sources
  return load_sources(sc.sft_config(c).data)[0]


def test_chat_source_from_a_saved_dataset_dict_through_the_typed_config(tmp_path):
  datasets = pytest.importorskip('datasets')
  path = _save(datasets, tmp_path / 'chat_ds', train=CONVS[:2], test=CONVS[2:])
  fmt = chat.ChatFormat.from_template('qwen2.5')
  train, test = _sft_sources({'kind': 'chat', 'path': path, 'chat_template': 'qwen2.5'},
                             {'kind': 'chat', 'path': path, 'chat_template': 'qwen2.5', 'split': 'test'})
  assert train == chat.chat_sft_rows(CONVS[:2], fmt) and len(train) == 3
  assert test == chat.chat_sft_rows(CONVS[2:], fmt)
  # A loaded Dataset is a sequence of dicts: chat_sft_rows takes it as is.
  assert chat.chat_sft_rows(datasets.load_from_disk(path)['train'], fmt) == train


@pytest.mark.parametrize('suffix', ['.jsonl', '.parquet'])
def test_prompt_completion_source_from_data_files_read_by_datasets(tmp_path, suffix):
  datasets = pytest.importorskip('datasets')
  rows = [{'q': f'question {i}', 'a': f'answer {i}', 'extra': i} for i in range(4)]
  path = tmp_path / f'sft{suffix}'
  ds = datasets.Dataset.from_list(rows)
  if suffix == '.parquet':
    ds.to_parquet(str(path))
  else:
    path.write_text('\n'.join(json.dumps(r) for r in rows))
  (got,) = _sft_sources({'kind': 'jsonl', 'path': str(path), 'loader': 'hf', 'prompt_field': 'q',
                         'completion_field': 'a'})
  assert got == [{'prompt': r['q'], 'completion': r['a']} for r in rows]
  assert rows_lib.read_rows(str(tmp_path / f'*{suffix}'), 'hf') == rows   # a glob of data files


def test_preference_pairs_from_a_saved_dataset(tmp_path):
  datasets = pytest.importorskip('datasets')
  from r1jax.rm.train import RewardModelOptions, split_pairs
  path = _save(datasets, tmp_path / 'pairs', train=PAIRS[:4], test=PAIRS[4:])
  opts = RewardModelOptions(train_path=path, eval_path=path, margin_field='score')
  train, held_out = split_pairs(opts)
  assert [p['chosen'] for p in train] == ['good 0', 'good 1', 'good 2', 'good 3']
  assert [(p['prompt'], p['margin']) for p in held_out] == [('Q4', 4.0), ('Q5', 5.0)]
  with pytest.raises(ValueError, match='loader'):
    RewardModelOptions(train_path=path, loader='csv')


def test_prompt_answer_task_from_a_saved_dataset_equals_the_jsonl_task(tmp_path):
  datasets = pytest.importorskip('datasets')
  path = _save(datasets, tmp_path / 'probs', train=PROBLEMS)
  jsonl = tmp_path / 'probs.jsonl'
  jsonl.write_text('\n'.join(json.dumps(r) for r in PROBLEMS))
  cfg = {'path': path, 'question_field': 'problem', 'id_field': 'uid', 'answer_parser': 'number'}
  recs = tasks.load_task({'name': 'hf', **cfg})
  assert recs == tasks.load_task({'name': 'jsonl', **cfg, 'path': str(jsonl)})
  assert recs[1]['question'] == 'What is 1 + 1?' and recs[1]['answer'] == '2' and recs[1]['id'] == 'p1'
  from r1jax.rl.tasks import load_general_task
  general = load_general_task({'name': 'hf', 'path': path, 'question_field': 'problem', 'task': 'general'})
  assert [r['question'] for r in general] == [p['problem'] for p in PROBLEMS]


def test_clear_errors_and_nothing_is_downloaded(tmp_path):
  datasets = pytest.importorskip('datasets')
  path = _save(datasets, tmp_path / 'ds', train=PROBLEMS)
  with pytest.raises(ValueError, match=r"no split 'test'; splits: \['train'\]"):
    rows_lib.read_rows(path, 'hf', 'test')
  (tmp_path / 'plain').mkdir()
  with pytest.raises(ValueError, match='not a saved Hugging Face dataset'):
    rows_lib.read_rows(tmp_path / 'plain')
  with pytest.raises(FileNotFoundError, match='not downloaded'):
    rows_lib.read_rows('openai/gsm8k', 'hf')      # a hub name is not looked up
  with pytest.raises(ValueError, match='loader'):
    sc.SFTSource(kind='chat', path=path, loader='hub')


def test_missing_datasets_package_names_the_extra(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'datasets', None)   # as if not installed
  (tmp_path / 'ds').mkdir()
  (tmp_path / 'ds' / 'state.json').write_text('{}')
  with pytest.raises(ImportError, match=r'r1jax\[hf\]'):
    rows_lib.read_rows(tmp_path / 'ds')
