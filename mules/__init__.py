"""The handler side: job handlers (uWSGI mules, web workers, webless processes) and runners."""
