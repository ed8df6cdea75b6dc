package ir

// Text prints the program in its stable text form.
func (p *Program) Text() string { return "" }
