"""Scheduled posts: a persona's channels run on a plan.

- ``plan``: the ``posts:`` section of a persona file, and the UTC slots it makes.
- ``planner``: each slot filled with a draft in character (text backend; the lite one
  fills templates from the persona's pillars, lore and greetings and says so in the
  post's metadata), never alike a recent post, its media asked of the job queue.
- ``publisher``: due approved posts claimed with a lease and published once through the
  platform adapters; an unknown outcome is ``unconfirmed``, never sent again blindly.
"""
