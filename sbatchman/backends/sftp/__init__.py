"""The SFTP engine: a pipelined paramiko client for clusters without rsync.

session holds the connection and runs a push; codec packs and reads the messages; wire moves
them over a channel with many in flight; pool hands out channels; scan reads the destination;
folders and apply carry out the plan.
"""
