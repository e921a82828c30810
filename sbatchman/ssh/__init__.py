"""Reaching a cluster: OpenSSH for rsync, paramiko for SFTP, both as ssh itself would connect.

resolve asks `ssh -G` what a host means; master runs the ControlMaster rsync talks through;
connect, auth and hostkeys open a verified paramiko transport; words turns ssh's stderr into
one line a user can act on; cancel and terminal are what Ctrl-C and prompts need.
"""
