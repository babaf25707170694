"""Generators: text, image, voice, music and video backends behind small protocols.

A generator takes a request and returns text or a file with its metadata; it knows
nothing of personas, chats or the database.
"""
