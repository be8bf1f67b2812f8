"""Viewers through an existing SFU (Janus): the gateway feeds each camera once."""
