"""The web console at ``/``: server-rendered pages for admins, operators and
auditors.  ``views`` is the blueprint (thin views over the services),
``permissions`` the one table of who may reach which endpoint,
``overview`` the Overview page's numbers, ``pages`` the headers and error
page every console answer gets."""
