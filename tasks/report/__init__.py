"""The comparison report: statistics, ranking, figures, Markdown and HTML, and where it goes."""
