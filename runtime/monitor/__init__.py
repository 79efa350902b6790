"""A running instance: the live program attached to interfaces, read every
interval, its events handed to the ASL host, commands taken on its control
socket, always detached at the end.

``reading`` turns two consecutive reads of the maps into what an interval shows
(snapshot, rates, map fill levels, counter deltas, warnings); ``instance`` owns
the lifecycle (load, attach, serve, read, stop, and a swap's hand-over to the next
program: runtime/deploy/); ``signals`` turns SIGINT, SIGTERM and SIGHUP into a stop
or a reload.

May import: abi, dataplane, engines, asl, control, export, ui, deploy.
"""
