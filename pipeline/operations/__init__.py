"""Operations: the control desk, replays, employee commands, activation and the operator CLI."""
