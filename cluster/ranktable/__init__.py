"""HCCL rank tables for Ascend launches, one job per module (import from the module itself):

* ``table``: the table as data (``TableDevice``, ``TableServer``, ``RankTable``) and the one
  writer of its JSON (``build_rank_table``, ``rank_table_text``);
* ``build``: new tables: for this host's devices, merged from several tables, merged for a
  multi-host launch; their default file names;
* ``check``: reading a table file and reporting every problem it has;
* ``hccn``: each device's IP, from hccn.conf or ``hccn_tool``;
* ``host``: this host's IP addresses and which server of a table it is.

The HCCL environment of the workers (timeouts) is ``cluster.hccl_env``.
"""
