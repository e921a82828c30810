"""Which files a sync considers: rsync and git patterns, ignore files, and the one walk.

patterns compiles one pattern; rules and rulesets say which rule wins; ignorefiles reads
.sbatchmanignore and .gitignore; walk goes through a folder once and returns the Selection.
"""
