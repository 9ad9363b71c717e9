"""Data: prompt templates, task loaders, procedural tasks and grain pipelines.

See docs/data.md.
"""
from r1jax.data.pipeline import DataIterator, make_prompt_iterator, make_sft_iterator
from r1jax.data.procedural import arithmetic_dataset, countdown_dataset, make_sft_corpus
from r1jax.data.tasks import default_data_dir, load_jsonl_task, load_task, read_jsonl
from r1jax.data.templates import Template, get_template, list_templates

__all__ = [
    'DataIterator', 'Template', 'arithmetic_dataset', 'countdown_dataset', 'default_data_dir',
    'get_template', 'list_templates', 'load_jsonl_task', 'load_task', 'make_prompt_iterator',
    'make_sft_corpus', 'make_sft_iterator', 'read_jsonl',
]
