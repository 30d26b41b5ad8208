"""The xenguest image on disk: one directory, or one tar file of it.

* :mod:`.layout` — the members of an image and the rules of their names;
* :mod:`.header` — the tar headers every tar reader reads alike;
* :mod:`.archive` — reading a file image: the index of its headers;
* :mod:`.append` — appending to a file image, and atomic rewrites;
* :mod:`.extract` — extraction that writes nowhere else than its destination;
* :mod:`.image_copy` — an image copied between a folder and a file;
* :mod:`.dircommit` — all-or-nothing commits of directory images;
* :mod:`.streams` — moving payload bytes, hashed on the way;
* :mod:`.manifest` — the digest manifest; :mod:`.manifest_check` — an image held
  against it; :mod:`.signing` — its signatures;
* :mod:`.pinned` — reading a verified image only as it was verified;
* :mod:`.netparams` — the network parameters of params.cfg;
* :mod:`.identity` — the image's compatible string and version (params.cfg);
* :mod:`.image` — the image model that every operation edits and commits.

Imports: the foundations.
"""
