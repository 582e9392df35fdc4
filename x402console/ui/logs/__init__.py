"""The log pane: bounded buffer, virtual log view, filters/search/pause, top clients."""
