"""Writers of a `fairbench.report_model.Report`: each renders the model it is given, one way.

- `markdown`: ``leaderboard.md``: the headline table, the Pareto sets, the grouped detail tables,
  each with its definitions;
- `csv_view`: the headline view as CSV (``fairbench leaderboard DIR --format csv``);
- `latex`: the headline view as a booktabs table (``--format latex``);
- `cells`: how a value, its spread, interval and rank group read as text (shared by all).

The HTML page is `fairbench.html_report`, the multi-benchmark site `fairbench.website`.
"""
