"""Media: the MediaPort over RTPEngine (``port``), codec policy (``codecs``, pure),
ng request builders (``commands``, pure), media files (``files``) and http(s)
media fetch/normalise/cache (``fetch``, ``convert``, ``cache``)."""
