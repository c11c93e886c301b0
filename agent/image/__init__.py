"""Action-server images: build context, default Dockerfile, build and push.

Everything here talks to a Docker engine through the `docker` SDK and to a
registry through the engine; nothing here knows which deploy target follows.
"""
