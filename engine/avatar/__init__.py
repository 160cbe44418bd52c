"""The avatar: a predictions bundle turned into a textured, labelled mesh directory (docs/avatar.md)."""
