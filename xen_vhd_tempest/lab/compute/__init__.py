"""The lab's nova: ``urls.py`` routes -> ``responses.py`` (HTTP, views per microversion) ->
``models.py`` (flavors, keypairs, servers' state machine, backups, attachments) ->
``driver.py`` (servers as QEMU guests) with XenServer's disks: ``xenserver_images.py``
(import checks, raw disks) and ``xenserver_backup.py`` (createBackup's chain export)."""
